/* pb_alloc.h: the allocator given to protobuf-c's unpack and free_unpacked
 * calls. In a normal build it is NULL (protobuf-c's own malloc/free); with
 * NN_FAULT_INJECTION it routes protobuf-c's allocations through core/mem.h
 * as site "protobuf-c", so the allocation-failure walk covers them too. */
#ifndef NN_COORDINATOR_PB_ALLOC_H
#define NN_COORDINATOR_PB_ALLOC_H

#include <protobuf-c/protobuf-c.h>
#include <stdlib.h>

#include "core/mem.h"

#ifdef NN_FAULT_INJECTION
static inline void *nn__pb_alloc(void *data, size_t size) {
  (void)data;
  return nn_mem_alloc_at(size, "protobuf-c");
}
static inline void nn__pb_free(void *data, void *p) {
  (void)data;
  free(p);
}
static inline ProtobufCAllocator *nn_pb_allocator(void) {
  static ProtobufCAllocator a = {nn__pb_alloc, nn__pb_free, NULL};
  return &a;
}
#else
static inline ProtobufCAllocator *nn_pb_allocator(void) { return NULL; }
#endif

#endif
