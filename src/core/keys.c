/* keys.c: the one reader of choice lists ("a|b|c", core/keys.h). Layer
 * activations, enum keys of the job file, schedule types, the lint's type
 * lists and the generated docs all read their choices here. */
#include "core/keys.h"

#include <string.h>

/* Start and length of entry k of a non-empty list; 0 if there is none. */
static int entry(const char *choices, int k, const char **start, size_t *len) {
  if (!choices || !choices[0] || k < 0) return 0;
  const char *p = choices;
  for (int i = 0; i < k; i++) {
    p = strchr(p, '|');
    if (!p) return 0;
    p++;
  }
  const char *bar = strchr(p, '|');
  *start = p;
  *len = bar ? (size_t)(bar - p) : strlen(p);
  return 1;
}

int nn_choice_count(const char *choices) {
  if (!choices || !choices[0]) return 0;
  int n = 1;
  for (const char *p = choices; (p = strchr(p, '|')) != NULL; p++) n++;
  return n;
}

int nn_choice_index(const char *choices, const char *s) {
  if (!s || !choices || !choices[0]) return -1;
  size_t len = strlen(s);
  const char *p = choices;
  for (int k = 0;; k++) {
    const char *bar = strchr(p, '|');
    size_t w = bar ? (size_t)(bar - p) : strlen(p);
    if (w == len && !strncmp(p, s, len)) return k;
    if (!bar) return -1;
    p = bar + 1;
  }
}

int nn_choice_at(const char *choices, int k, char *buf, size_t n) {
  const char *p;
  size_t w;
  buf[0] = '\0';
  if (!entry(choices, k, &p, &w)) return -1;
  size_t c = w < n - 1 ? w : n - 1;
  memcpy(buf, p, c);
  buf[c] = '\0';
  return (int)w;
}
