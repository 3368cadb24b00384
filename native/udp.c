/* Batched UDP sockets for the tunnel underlay (recvmmsg/sendmmsg, UDP GSO/GRO). */
#include "common.h"

bool udp_init(napi_env env, napi_value exports, addon_data_t *ad) {
  (void)env;
  (void)exports;
  (void)ad;
  return true;
}
