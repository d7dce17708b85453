/*
 * Waits with a relative timeout, straight to the C library: preloaded by
 * scripts/test_at.sh in front of Debian's libfaketime (0.9.10), and only there.
 *
 * libfaketime wraps these calls and marks the thread "do not fake" while it waits. A
 * signal handler that runs during the wait then reads the real clock: PostgreSQL's
 * SIGALRM handler compares the real time with a statement_timeout or lock_timeout
 * deadline set in fake time, finds it weeks away, and the timeout never fires while the
 * backend waits for a lock. The run moves only the wall clock (no rate, the monotonic
 * clock real), so these waits need nothing from libfaketime.
 *
 * clock_nanosleep on the monotonic clock too: 0.9.10 shifts its absolute deadlines even
 * with the monotonic clock left real (libfaketime issue #426), so Python's time.sleep
 * failed with EINVAL. Waits on the wall clock (absolute deadlines in fake time, condition
 * variables, semaphores) stay libfaketime's, which translates them.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <sys/epoll.h>
#include <sys/select.h>
#include <time.h>

static void *libc_function(const char *name)
{
    static void *libc;
    if (libc == NULL)
        libc = dlopen("libc.so.6", RTLD_LAZY | RTLD_NOLOAD);
    return libc == NULL ? NULL : dlsym(libc, name);
}

#define PASS_THROUGH(type, name, params, args)                          \
    type name params                                                    \
    {                                                                   \
        static type (*real) params;                                     \
        if (real == NULL)                                               \
            real = (type (*) params) libc_function(#name);              \
        if (real == NULL) {                                             \
            errno = ENOSYS;                                             \
            return -1;                                                  \
        }                                                               \
        return real args;                                               \
    }

PASS_THROUGH(int, epoll_wait,
             (int epfd, struct epoll_event *events, int maxevents, int timeout),
             (epfd, events, maxevents, timeout))
PASS_THROUGH(int, epoll_pwait,
             (int epfd, struct epoll_event *events, int maxevents, int timeout,
              const sigset_t *sigmask),
             (epfd, events, maxevents, timeout, sigmask))
PASS_THROUGH(int, poll, (struct pollfd *fds, nfds_t nfds, int timeout), (fds, nfds, timeout))
PASS_THROUGH(int, ppoll,
             (struct pollfd *fds, nfds_t nfds, const struct timespec *timeout,
              const sigset_t *sigmask),
             (fds, nfds, timeout, sigmask))
PASS_THROUGH(int, select,
             (int nfds, fd_set *readfds, fd_set *writefds, fd_set *exceptfds,
              struct timeval *timeout),
             (nfds, readfds, writefds, exceptfds, timeout))
PASS_THROUGH(int, pselect,
             (int nfds, fd_set *readfds, fd_set *writefds, fd_set *exceptfds,
              const struct timespec *timeout, const sigset_t *sigmask),
             (nfds, readfds, writefds, exceptfds, timeout, sigmask))
PASS_THROUGH(int, nanosleep, (const struct timespec *req, struct timespec *rem), (req, rem))

int clock_nanosleep(clockid_t clock, int flags, const struct timespec *req, struct timespec *rem)
{
    static int (*real)(clockid_t, int, const struct timespec *, struct timespec *);
    if (clock == CLOCK_REALTIME) {
        /* A wall-clock deadline: libfaketime's (next in the preload list) translates it. */
        static int (*faked)(clockid_t, int, const struct timespec *, struct timespec *);
        if (faked == NULL)
            faked = (int (*)(clockid_t, int, const struct timespec *, struct timespec *))
                dlsym(RTLD_NEXT, "clock_nanosleep");
        return faked == NULL ? ENOSYS : faked(clock, flags, req, rem);
    }
    if (real == NULL)
        real = (int (*)(clockid_t, int, const struct timespec *, struct timespec *))
            libc_function("clock_nanosleep");
    return real == NULL ? ENOSYS : real(clock, flags, req, rem);
}
