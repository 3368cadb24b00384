{
  "targets": [
    {
      "target_name": "tapnet",
      "sources": ["addon.c", "napi_util.c", "pollfd.c", "tap.c", "uring.c", "udp.c", "xsk.c", "offload.c", "offload_core.c", "seccomp.c", "busypoll.c", "fdpass.c"],
      "defines": ["NAPI_VERSION=8", "_GNU_SOURCE"],
      "cflags_c": ["-std=c11", "-Wall", "-Wextra"],
      "libraries": ["-lseccomp", "-luring"]
    }
  ]
}
