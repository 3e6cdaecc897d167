/* registry.h: the load balancer's backends, the admin API's JSON, and the seed's weighted random choice. */
#ifndef LB_REGISTRY_H
#define LB_REGISTRY_H

#include <stddef.h>
#include <stdint.h>

enum { REG_MAX = 64, REG_NAME_MAX = 253 };

/* One backend, as the seed's Service struct: {name: String, weight: u32, ip: String, port: u16}. */
typedef struct {
    char name[REG_NAME_MAX + 1];
    uint32_t weight;
    uint8_t ip[4];
    uint16_t port;
} lb_backend;

typedef struct {
    lb_backend items[REG_MAX];
    int count;
    uint32_t generation; /* bumped on every change, so a retry loop knows its indexes went stale */
} lb_registry;

/* Parses a register body {"name": str, "weight": u32, "ip": "a.b.c.d", "port": u16} (unknown keys ignored, as
 * serde does). 0 on success; else -1 and *why says what is wrong (for the log and the X-LB-Error header). */
int reg_parse(const char *body, size_t len, lb_backend *out, const char **why);
/* Insert, or replace the entry with the same name in place (the seed's upsert). -1 when full. */
int reg_upsert(lb_registry *reg, const lb_backend *b);
/* Remove by name: 0, or -1 when there is none. */
int reg_remove(lb_registry *reg, const char *name);
/* The registry as a JSON array into out (NUL-terminated); the length, or 0 if cap is too small. */
size_t reg_json(const lb_registry *reg, char *out, size_t cap);
/* The seed's choice over the entries not marked in skip: r in [0, total weight), walk subtracting; all weights 0
 * -> the first. -1 when every entry is skipped (or none exists). */
int reg_pick(const lb_registry *reg, uint64_t random, const uint8_t *skip);

#endif
