/* Large heap blocks and who asked for them: the event log behind scripts/ms_memory_account.py.
 *
 * MindSpore 2.10 reports nothing about its CPU memory (runtime.memory_stats() is documented empty on CPU,
 * and its memory tracker records tasks but no blocks there), so this LD_PRELOAD shim watches the C heap:
 * every allocation of at least MALLOC_ACCOUNT_MIN bytes (default 1 MiB) through malloc, calloc, realloc,
 * the aligned allocators, operator new and anonymous mmap, and every free of one, is appended to
 * MALLOC_ACCOUNT_OUT as
 *     a <size> <address> <return address>      f <address>
 * (hex; M and U for mmap and munmap) and malloc_account_mark("name") (called through ctypes) writes "m <name>". The return address says
 * which library asked (MindSpore's memory pool, oneDNN, torch, numpy); the probe resolves it against
 * /proc/<pid>/maps. Build: gcc -O2 -shared -fPIC -o malloc_account.so malloc_account.c -ldl
 * A diagnostic, never loaded by the package.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <execinfo.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int fd = -2;            /* -2: not opened yet, -1: disabled */
static size_t min_size = 1 << 20;
static int depth = 0;          /* MALLOC_ACCOUNT_DEPTH: callers logged beyond the first (backtrace) */

static void open_log(void) {   /* under lock */
  const char *path = getenv("MALLOC_ACCOUNT_OUT");
  const char *min = getenv("MALLOC_ACCOUNT_MIN");
  const char *d = getenv("MALLOC_ACCOUNT_DEPTH");
  if (min) min_size = (size_t)strtoull(min, 0, 10);
  if (d) depth = atoi(d) > 16 ? 16 : atoi(d);
  fd = path ? open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644) : -1;
}

static char *hex(char *p, uintptr_t v) {
  char tmp[17]; int n = 0;
  do { tmp[n++] = "0123456789abcdef"[v & 15]; v >>= 4; } while (v);
  while (n) *p++ = tmp[--n];
  return p;
}

static void emit(char kind, size_t size, void *ptr, void *caller) {   /* no allocation in here */
  char line[512], *p = line;
  pthread_mutex_lock(&lock);
  if (fd == -2) open_log();
  if (fd >= 0) {
    *p++ = kind; *p++ = ' ';
    if (kind != 'f') { p = hex(p, size); *p++ = ' '; }
    p = hex(p, (uintptr_t)ptr);
    if (kind == 'a' || kind == 'M') { *p++ = ' '; p = hex(p, (uintptr_t)caller); }
    if (depth && (kind == 'a' || kind == 'M')) {  /* the callers above, for a stack in the report */
      void *frames[20];
      int n = backtrace(frames, depth + 4);   /* this shim's own frames first: the reader skips to caller */
      for (int i = 1; i < n; i++) { *p++ = i == 1 ? ' ' : ','; p = hex(p, (uintptr_t)frames[i]); }
    }
    *p++ = '\n';
    (void)!write(fd, line, p - line);
  }
  pthread_mutex_unlock(&lock);
}

static inline void *noted(void *ptr, size_t size, void *caller) {
  if (ptr && size >= min_size) emit('a', size, ptr, caller);
  return ptr;
}

static inline void forget(void *ptr) {
  if (ptr && malloc_usable_size(ptr) >= min_size) emit('f', 0, ptr, 0);
}

void malloc_account_mark(const char *name) {
  pthread_mutex_lock(&lock);
  if (fd == -2) open_log();
  if (fd >= 0) {
    (void)!write(fd, "m ", 2);
    (void)!write(fd, name, strlen(name));
    (void)!write(fd, "\n", 1);
  }
  pthread_mutex_unlock(&lock);
}

#define CALLER __builtin_return_address(0)

void *malloc(size_t n) { return noted(__libc_malloc(n), n, CALLER); }
void *calloc(size_t k, size_t n) { return noted(__libc_calloc(k, n), k * n, CALLER); }
void free(void *p) { forget(p); __libc_free(p); }
void *realloc(void *p, size_t n) {
  forget(p);
  return noted(__libc_realloc(p, n), n, CALLER);
}
void *memalign(size_t a, size_t n) { return noted(__libc_memalign(a, n), n, CALLER); }
void *aligned_alloc(size_t a, size_t n) { return noted(__libc_memalign(a, n), n, CALLER); }
int posix_memalign(void **out, size_t a, size_t n) {
  void *p = __libc_memalign(a, n);
  if (!p) return 12; /* ENOMEM */
  *out = noted(p, n, CALLER);
  return 0;
}

/* operator new / new[] (and their aligned forms): attribute to the C++ caller, not to libstdc++ */
void *_Znwm(size_t n) { void *p = noted(__libc_malloc(n), n, CALLER); if (!p) abort(); return p; }
void *_Znam(size_t n) { void *p = noted(__libc_malloc(n), n, CALLER); if (!p) abort(); return p; }
void *_ZnwmSt11align_val_t(size_t n, size_t a) { void *p = noted(__libc_memalign(a, n), n, CALLER); if (!p) abort(); return p; }
void *_ZnamSt11align_val_t(size_t n, size_t a) { void *p = noted(__libc_memalign(a, n), n, CALLER); if (!p) abort(); return p; }

/* anonymous mappings asked for directly (glibc's own large-chunk mmap does not pass through here) */
void *mmap(void *addr, size_t n, int prot, int flags, int fd_, off_t off) {
  static void *(*real)(void *, size_t, int, int, int, off_t) = 0;
  if (!real) real = dlsym(RTLD_NEXT, "mmap");
  void *p = real(addr, n, prot, flags, fd_, off);
  if (p != MAP_FAILED && (flags & MAP_ANONYMOUS) && n >= min_size) emit('M', n, p, CALLER);
  return p;
}

int munmap(void *addr, size_t n) {
  static int (*real)(void *, size_t) = 0;
  if (!real) real = dlsym(RTLD_NEXT, "munmap");
  if (n >= min_size) emit('U', n, addr, 0);
  return real(addr, n);
}
