/* ctl/sdnotify.h: systemd's service notification protocol (sd_notify(3)),
 * without libsystemd: one datagram to $NOTIFY_SOCKET per state change,
 * and WATCHDOG=1 pings when the unit sets WatchdogSec=.
 */
#ifndef VMGATE_CTL_SDNOTIFY_H
#define VMGATE_CTL_SDNOTIFY_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* sdnotify_send sends msg ("READY=1", "STOPPING=1", ...) to the socket
 * $NOTIFY_SOCKET names ("/path" or "@abstract"). Returns 0 when it was
 * sent or when there is no such socket (not run by systemd), else
 * -errno. */
int sdnotify_send(const char *msg);

/* sdnotify_watchdog_ms parses $WATCHDOG_USEC and $WATCHDOG_PID (either may
 * be NULL) for process self: how often to ping, half the timeout systemd
 * allows, in ms; 0 when no watchdog is asked of this process. Pure. */
uint64_t sdnotify_watchdog_ms(const char *usec, const char *pid, pid_t self);

#endif
