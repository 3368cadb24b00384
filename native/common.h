/*
 * The addon's parts (addon.c puts them together): the per-environment data and
 * each part's init. The helpers they share are in napi_util.h (values, errors)
 * and pollfd.h (fd-watching handles).
 */
#ifndef TAPNET_COMMON_H
#define TAPNET_COMMON_H

#include <stdbool.h>

#include <node_api.h>

#include "napi_util.h"

typedef struct busypoll_s busypoll_t; /* busypoll.c */

/* Per-environment data (napi_set_instance_data): the handle classes. */
typedef struct {
  napi_ref tap_ctor; /* TapHandle (tap.c) */
  napi_ref udp_ctor; /* UdpHandle (udp.c) */
  napi_ref raw_ctor; /* RawHandle (udp.c) */
  napi_ref xsk_ctor; /* XskHandle (xsk.c) */
  busypoll_t *busy;  /* busy polling after a batch (busypoll.c); NULL: never set */
} addon_data_t;

/* Module parts: each adds its functions to `exports`; false with an exception pending on failure. */
bool tap_init(napi_env env, napi_value exports, addon_data_t *ad);
bool udp_init(napi_env env, napi_value exports, addon_data_t *ad);
bool xsk_init(napi_env env, napi_value exports, addon_data_t *ad);
bool offload_init(napi_env env, napi_value exports);
bool sandbox_init(napi_env env, napi_value exports);
bool busypoll_init(napi_env env, napi_value exports);

/* After a batch was delivered: keeps the loop polling for the busy-poll window (if set). */
void busypoll_kick(napi_env env);
/* The environment's data is being freed (the busy-poll handle is closed by its own hook). */
void busypoll_release(addon_data_t *ad);
bool fdpass_init(napi_env env, napi_value exports);

#endif
