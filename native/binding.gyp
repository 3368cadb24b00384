{
  "targets": [
    {
      "target_name": "tapnet",
      "sources": ["tap.c", "offload.c", "offload_core.c", "udp.c", "pollfd.c", "seccomp.c"],
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"],
      "cflags_c": ["-std=c11", "-Wall", "-Wextra"],
      "libraries": ["-lseccomp"]
    }
  ]
}
