/* pool.c: kept-alive backend connections (see lb.h). A response that ended cleanly (its length or last chunk
 * seen, no extra bytes, no "Connection: close") leaves its connection here, and the next request for the same
 * address takes it instead of opening a new one: no connect, no close, and two host calls fewer per request. */
#include <string.h>
#include <unistd.h>

#include "lb.h"

typedef struct {
    int fd; /* -1: a free slot */
    uint8_t ip[4];
    uint16_t port;
    uint64_t since;
} lb_idle;

static lb_idle pool[LB_POOL];

void lb_pool_init(void) {
    for (int i = 0; i < LB_POOL; i++) pool[i].fd = -1;
}

static void drop(int slot) {
    close(pool[slot].fd);
    pool[slot].fd = -1;
}

int lb_pool_take(const uint8_t ip[4], uint16_t port) {
    int best = -1; /* the most recently used: the warmest, and the least likely to be closed by the backend */
    for (int i = 0; i < LB_POOL; i++)
        if (pool[i].fd >= 0 && pool[i].port == port && !memcmp(pool[i].ip, ip, 4) &&
            (best < 0 || pool[i].since > pool[best].since))
            best = i;
    if (best < 0) return -1;
    int fd = pool[best].fd;
    pool[best].fd = -1;
    return fd;
}

void lb_pool_put(int fd, const uint8_t ip[4], uint16_t port) {
    int slot = -1;
    for (int i = 0; i < LB_POOL; i++) {
        if (pool[i].fd < 0) {
            slot = i;
            break;
        }
        if (slot < 0 || pool[i].since < pool[slot].since) slot = i; /* full: the oldest makes room */
    }
    if (pool[slot].fd >= 0) drop(slot);
    pool[slot].fd = fd, pool[slot].port = port, pool[slot].since = lb_now_ms();
    memcpy(pool[slot].ip, ip, 4);
}

int lb_pool_watch(int *fds, uint64_t *deadline) {
    for (int i = 0; i < LB_POOL; i++) {
        fds[i] = pool[i].fd;
        if (pool[i].fd >= 0 && pool[i].since + LB_POOL_IDLE_MS < *deadline) *deadline = pool[i].since + LB_POOL_IDLE_MS;
    }
    return LB_POOL;
}

void lb_pool_readable(int slot) {
    if (slot >= 0 && slot < LB_POOL && pool[slot].fd >= 0) drop(slot);
}

void lb_pool_expire(uint64_t now) {
    for (int i = 0; i < LB_POOL; i++)
        if (pool[i].fd >= 0 && pool[i].since + LB_POOL_IDLE_MS <= now) drop(i);
}
