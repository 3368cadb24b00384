/*
 * tapnet's native addon: Linux TAP devices (tap.c), batched UDP and raw IPv4
 * sockets (udp.c), AF_XDP sockets (xsk.c), software offloads (offload.c over offload_core.c) and the
 * seccomp allow-list (seccomp.c). The only C in the project, kept thin: it moves
 * batches of frames between the kernel and a caller's packet pool with one
 * JavaScript call per batch; all policy stays in TypeScript (src/io).
 */
#include <stdlib.h>

#include "common.h"

static void addon_data_finalize(napi_env env, void *data, void *hint) {
  (void)hint;
  addon_data_t *ad = data;
  napi_ref refs[] = {ad->tap_ctor, ad->udp_ctor, ad->raw_ctor, ad->xsk_ctor};
  for (size_t i = 0; i < sizeof refs / sizeof refs[0]; i++)
    if (refs[i] != NULL) napi_delete_reference(env, refs[i]);
  busypoll_release(ad);
  free(ad);
}

static napi_value init(napi_env env, napi_value exports) {
  addon_data_t *ad = calloc(1, sizeof *ad);
  if (ad == NULL) {
    napi_throw_error(env, "ENOMEM", "tapnet: out of memory");
    return NULL;
  }
  if (napi_set_instance_data(env, ad, addon_data_finalize, NULL) != napi_ok) {
    free(ad);
    napi_throw_error(env, "ERR_TAPNET_NAPI", "tapnet: cannot initialise the addon");
    return NULL;
  }
  if (!tap_init(env, exports, ad) || !udp_init(env, exports, ad) || !xsk_init(env, exports, ad) || !offload_init(env, exports) ||
      !sandbox_init(env, exports) || !busypoll_init(env, exports) ||
      !fdpass_init(env, exports))
    return NULL;
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
