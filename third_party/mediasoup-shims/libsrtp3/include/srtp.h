/*
 * Throng compatibility layer: the libsrtp 3.x API subset that mediasoup uses,
 * on top of libsrtp 2.5 (Debian's source package libsrtp2, built against the
 * same static OpenSSL as the worker). No package registry ships libsrtp 3.x.
 *
 * What differs from 2.x and is bridged here:
 *  - srtp_policy_t is an opaque handle built with srtp_policy_create/set_*;
 *  - srtp_protect/unprotect (and the RTCP variants) take separate input and
 *    output buffers with size_t lengths; the output length is an in/out
 *    capacity, and srtp_err_status_buffer_small reports a short buffer;
 *  - srtp_stream_remove replaces srtp_remove_stream;
 *  - error codes 28 (buffer_small) and 29 (cryptex_err) exist.
 * MKI and cryptex are not used by mediasoup and are not supported.
 *
 * The 2.x header is included first with its own names; the macros below then
 * point mediasoup's 3.x names at the functions of srtp3_compat.c.
 */
#ifndef THRONG_SRTP3_COMPAT_H
#define THRONG_SRTP3_COMPAT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <srtp2/srtp.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct throng_srtp3_policy_ctx *throng_srtp3_policy_t;

srtp_err_status_t throng_srtp3_policy_create(throng_srtp3_policy_t *policy);
void throng_srtp3_policy_destroy(throng_srtp3_policy_t policy);
srtp_err_status_t throng_srtp3_policy_set_ssrc(throng_srtp3_policy_t policy, srtp_ssrc_t ssrc);
srtp_err_status_t throng_srtp3_policy_set_profile(throng_srtp3_policy_t policy,
                                                  srtp_profile_t profile);
srtp_err_status_t throng_srtp3_policy_add_key(throng_srtp3_policy_t policy,
                                              const uint8_t *key,
                                              size_t key_len,
                                              const uint8_t *salt,
                                              size_t salt_len,
                                              const uint8_t *mki,
                                              size_t mki_len);
srtp_err_status_t throng_srtp3_policy_set_window_size(throng_srtp3_policy_t policy,
                                                      size_t window_size);
srtp_err_status_t throng_srtp3_policy_set_allow_repeat_tx(throng_srtp3_policy_t policy,
                                                          bool allow);
srtp_err_status_t throng_srtp3_create(srtp_t *session, const throng_srtp3_policy_t policy);
srtp_err_status_t throng_srtp3_protect(srtp_t ctx,
                                       const uint8_t *rtp,
                                       size_t rtp_len,
                                       uint8_t *srtp,
                                       size_t *srtp_len,
                                       size_t mki_index);
srtp_err_status_t throng_srtp3_unprotect(srtp_t ctx,
                                         const uint8_t *srtp,
                                         size_t srtp_len,
                                         uint8_t *rtp,
                                         size_t *rtp_len);
srtp_err_status_t throng_srtp3_protect_rtcp(srtp_t ctx,
                                            const uint8_t *rtcp,
                                            size_t rtcp_len,
                                            uint8_t *srtcp,
                                            size_t *srtcp_len,
                                            size_t mki_index);
srtp_err_status_t throng_srtp3_unprotect_rtcp(srtp_t ctx,
                                              const uint8_t *srtcp,
                                              size_t srtcp_len,
                                              uint8_t *rtcp,
                                              size_t *rtcp_len);
srtp_err_status_t throng_srtp3_stream_remove(srtp_t session, uint32_t ssrc);

#ifdef __cplusplus
}
#endif

#ifndef THRONG_SRTP3_NO_RENAME
#define srtp_err_status_buffer_small ((srtp_err_status_t)28)
#define srtp_err_status_cryptex_err ((srtp_err_status_t)29)

#define srtp_policy_t throng_srtp3_policy_t
#define srtp_policy_create throng_srtp3_policy_create
#define srtp_policy_destroy throng_srtp3_policy_destroy
#define srtp_policy_set_ssrc throng_srtp3_policy_set_ssrc
#define srtp_policy_set_profile throng_srtp3_policy_set_profile
#define srtp_policy_add_key throng_srtp3_policy_add_key
#define srtp_policy_set_window_size throng_srtp3_policy_set_window_size
#define srtp_policy_set_allow_repeat_tx throng_srtp3_policy_set_allow_repeat_tx
#define srtp_create throng_srtp3_create
#define srtp_protect throng_srtp3_protect
#define srtp_unprotect throng_srtp3_unprotect
#define srtp_protect_rtcp throng_srtp3_protect_rtcp
#define srtp_unprotect_rtcp throng_srtp3_unprotect_rtcp
#define srtp_stream_remove throng_srtp3_stream_remove
#endif /* THRONG_SRTP3_NO_RENAME */

#endif /* THRONG_SRTP3_COMPAT_H */
