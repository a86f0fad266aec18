/* strbuf.h: a growable, always NUL-terminated byte buffer (the TOML parser's
 * strings, the run log's history). The holder owns p and frees it. */
#ifndef NN_CORE_STRBUF_H
#define NN_CORE_STRBUF_H

#include <stdlib.h>
#include <string.h>

#include "core/mem.h"

typedef struct nn_strbuf {
  char *p;          /* NULL until the first append; then n bytes and a NUL */
  size_t n, cap;    /* bytes held (without the NUL), bytes allocated */
} nn_strbuf;

/* Append k bytes of d (then a NUL), doubling the allocation as needed (from
 * `first` bytes). 0, or -1 when out of memory (b unchanged). */
static inline int nn_strbuf_put(nn_strbuf *b, const void *d, size_t k, size_t first) {
  if (b->n + k + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : (first ? first : 32);
    while (cap < b->n + k + 1) cap *= 2;
    char *np = nn_realloc(b->p, cap);
    if (!np) return -1;
    b->p = np;
    b->cap = cap;
  }
  if (k) memcpy(b->p + b->n, d, k);
  b->n += k;
  b->p[b->n] = '\0';
  return 0;
}

#endif
