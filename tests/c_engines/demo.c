/*
 * demo.c -- a test engine in the shapes real AIGES C wrappers have (see the tests in
 * tests/test_c_engine*.py).  Written only against wrapper.h / type.h.  The "ctrl" param picks a
 * behaviour; compile-time flags remove symbols:
 *   -DNO_SESSIONS  no wrapperCreate/Write/Read/Destroy     -DNO_EXEC   no wrapperExec/ExecFree
 *   -DNO_ERROR     no wrapperError                         -DNOISY     prints from a constructor
 *
 * once (wrapperExec): ctrl = echo (default: "echo" = the first input, params in its desc, and
 *   "info" = {"strlen":..,"len":..,"params":..}), static (a static node ExecFree must not free),
 *   error (4242), nodata (0 and no list), badlen (data NULL, len 5), sleep (ms=N), stats,
 *   crash | abort | exit | hang, thread_crash (a library thread crashes)
 * once (wrapperExecAsync): default = callback from a thread after ms (default 50) that reads the
 *   input only then; inline, fail (callback ret 4242), silent, twice, badtag (a callback with a
 *   tag never given out first), error (returns 4242), stats,
 *   crash | abort | exit | hang
 * init ([wrapper]): fail = N, init = crash | abort | exit | hang
 * sessions (ctrl on the first frame): default (one result per write, uppercased, End on the last
 *   frame), always (wrapperRead always returns a static list), late (results only appear 120 ms
 *   after the last write), fail (errNum 5151), null (NULL, errNum 0), readfail (6161),
 *   writefail (7171), crash | abort | exit | hang (in create), destroy:<how> (in destroy);
 *   frame data "crash" | "abort" | "exit" | "hang" faults in write, "read:<how>" in the next read.
 *   With a callback (asyncMode) a thread per session pushes one result per write.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>

#include "wrapper.h"

__attribute__((unused)) static long n_allocs, n_frees, n_execs, n_execfrees, n_creates, n_destroys, n_overlap, n_running, n_max_running;
static long n_second_ret = 1, n_inits;
static pthread_mutex_t hang_lock = PTHREAD_MUTEX_INITIALIZER;

#define ADD(x, n) __atomic_add_fetch(&(x), (n), __ATOMIC_SEQ_CST)

#ifdef NOISY
__attribute__((constructor)) static void noisy(void) {
    printf("demo engine: hello from a constructor on stdout\n");
    fflush(stdout);
    fprintf(stderr, "demo engine: and on stderr\n");
}
#endif

static void fault(const char* how) {
    if (!how) return;
    if (!strcmp(how, "crash")) { volatile int* p = NULL; *p = 1; }
    if (!strcmp(how, "abort")) abort();
    if (!strcmp(how, "exit")) exit(3);
    if (!strcmp(how, "hang")) { pthread_mutex_lock(&hang_lock); pthread_mutex_lock(&hang_lock); }
}

static const char* param(pParamList p, const char* key) {
    /* no NULL check on p itself: upstream never passes NULL (an empty list is one zeroed node) */
    for (; p; p = p->next)
        if (p->key && !strcmp(p->key, key)) return p->value;
    return NULL;
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void* xmalloc(size_t n) { ADD(n_allocs, 1); return calloc(1, n ? n : 1); }
static void xfree(void* p) { if (p) { ADD(n_frees, 1); free(p); } }
static char* xstrdup(const char* s) { char* d = xmalloc(strlen(s) + 1); strcpy(d, s); return d; }

static pDataList node(const char* key, const void* data, unsigned int len, DataStatus status) {
    pDataList n = xmalloc(sizeof(*n));
    n->key = xstrdup(key);
    n->data = xmalloc(len);
    memcpy(n->data, data, len);
    n->len = len;
    n->type = DataText;
    n->status = status;
    return n;
}

static pParamList desc_node(const char* key, const char* value) {
    pParamList p = xmalloc(sizeof(*p));
    p->key = xstrdup(key);
    p->value = xstrdup(value);
    p->vlen = strlen(value);
    return p;
}

static void free_list(pDataList l) {
    while (l) {
        pDataList next = l->next;
        pParamList d = l->desc;
        while (d) { pParamList dn = d->next; xfree(d->key); xfree(d->value); xfree(d); d = dn; }
        xfree(l->key); xfree(l->data); xfree(l);
        l = next;
    }
}

static char static_key[] = "static", static_data[] = "from a static node";
__attribute__((unused)) static struct DataList static_node = {static_key, static_data, sizeof(static_data) - 1, DataText, DataOnce, NULL, NULL};

static pDataList stats_node(void) {
    char buf[512];
    snprintf(buf, sizeof buf,
             "{\"allocs\":%ld,\"frees\":%ld,\"execs\":%ld,\"execfrees\":%ld,\"creates\":%ld,\"destroys\":%ld,"
             "\"overlap\":%ld,\"max_running\":%ld,\"second_ret\":%ld,\"inits\":%ld}",
             __atomic_load_n(&n_allocs, __ATOMIC_SEQ_CST), __atomic_load_n(&n_frees, __ATOMIC_SEQ_CST),
             n_execs, n_execfrees, n_creates, n_destroys, n_overlap, n_max_running, n_second_ret, n_inits);
    /* not counted: the stats themselves must not move the counters they report */
    pDataList n = calloc(1, sizeof(*n));
    n->key = strdup("stats");
    n->len = strlen(buf);
    n->data = strdup(buf);
    n->status = DataOnce;
    return n;
}

static void free_uncounted(pDataList n) { free(n->key); free(n->data); free(n); }

/* ---------------------------------------------------------------- init / fini / error */
int wrapperInit(pConfig cfg) {
    const char* first = cfg->key; /* dereferenced without a check, as many wrappers do */
    (void)first;
    ADD(n_inits, 1);
    fault(param(cfg, "init"));
    const char* fail = param(cfg, "fail");
    return fail ? atoi(fail) : 0;
}

int wrapperFini(void) { return 0; }

#ifndef NO_ERROR
const char* wrapperError(int errNum) {
    switch (errNum) {
    case 4242: return "demo error 4242: asked for by ctrl=error";
    case 5151: return "demo error 5151: create refused";
    case 6161: return "demo error 6161: read failed";
    case 7171: return "demo error 7171: write failed";
    case 7: return "demo error 7: init refused by fail=7";
    default: return NULL;
    }
}
#endif

const char* wrapperVersion(void) { return "demo 1.0"; }

/* ---------------------------------------------------------------- once, sync */
__attribute__((unused)) static pDataList echo_result(pParamList params, pDataList req) {
    const char* in = req && req->key ? (const char*)req->data : "";
    unsigned int len = req && req->key ? req->len : 0;
    pDataList out = node("echo", in, len, DataOnce);
    int n = 0;
    pParamList tail = NULL;
    for (pParamList p = params; p; p = p->next) {
        if (!p->key) continue;
        pParamList d = desc_node(p->key, p->value);
        if (tail) tail->next = d; else out->desc = d;
        tail = d;
        n++;
    }
    char info[160];
    /* strlen on the input: the host NUL-terminates data after len */
    snprintf(info, sizeof info, "{\"strlen\":%zu,\"len\":%u,\"params\":%d}", strlen(in), len, n);
    out->next = node("info", info, strlen(info), DataOnce);
    return out;
}

static void* crash_later(void* arg) { (void)arg; sleep_ms(20); fault("crash"); return NULL; }

#ifndef NO_EXEC
int wrapperExec(const char* usrTag, pParamList params, pDataList reqData, pDataList* respData,
                unsigned int psrIds[], int psrCnt) {
    (void)usrTag; (void)psrIds; (void)psrCnt;
    const char* ctrl = param(params, "ctrl");
    long now = ADD(n_running, 1);
    long seen = __atomic_load_n(&n_max_running, __ATOMIC_SEQ_CST);
    while (now > seen && !__atomic_compare_exchange_n(&n_max_running, &seen, now, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {}
    int ret = 0;
    ADD(n_execs, 1);
    if (!ctrl || !strcmp(ctrl, "echo")) {
        *respData = echo_result(params, reqData);
    } else if (!strcmp(ctrl, "static")) {
        *respData = &static_node;
    } else if (!strcmp(ctrl, "error")) {
        ret = 4242;
    } else if (!strcmp(ctrl, "nodata")) {
        *respData = NULL;
    } else if (!strcmp(ctrl, "badlen")) {
        pDataList n = node("bad", "", 0, DataOnce);
        xfree(n->data);
        n->data = NULL;
        n->len = 5;
        *respData = n;
    } else if (!strcmp(ctrl, "sleep")) {
        const char* ms = param(params, "ms");
        sleep_ms(ms ? atol(ms) : 200);
        *respData = echo_result(params, reqData);
    } else if (!strcmp(ctrl, "stats")) {
        *respData = stats_node();
    } else if (!strcmp(ctrl, "thread_crash")) {
        pthread_t t;
        pthread_create(&t, NULL, crash_later, NULL);
        pthread_detach(t);
        sleep_ms(1000);
        *respData = echo_result(params, reqData);
    } else {
        fault(ctrl);
        ret = 22222;
    }
    ADD(n_running, -1);
    return ret;
}

int wrapperExecFree(const char* usrTag, pDataList* respData) {
    (void)usrTag;
    ADD(n_execfrees, 1);
    pDataList l = *respData;
    if (l == &static_node) return 0;
    if (l && !strcmp(l->key, "stats")) { free_uncounted(l); return 0; }
    free_list(l);
    *respData = NULL;
    return 0;
}
#endif

/* ---------------------------------------------------------------- once, async */
typedef struct {
    const void* tag;
    wrapperCallback cb;
    pDataList req; /* the host's input, read only when the answer is made (late, on purpose) */
    long ms;
    int twice;
    int fail;
} Job;

static void* async_job(void* arg) {
    Job* j = arg;
    sleep_ms(j->ms);
    if (j->fail) {
        j->cb(j->tag, NULL, 4242);
    } else {
        pDataList out = node("echo", j->req->data, j->req->len, DataOnce);
        j->cb(j->tag, out, 0);
        if (j->twice) n_second_ret = j->cb(j->tag, out, 0);
        free_list(out); /* the callback copied it */
    }
    free(j);
    return NULL;
}

int wrapperExecAsync(const char* usrTag, pParamList params, pDataList reqData, wrapperCallback callback,
                     int timeout, unsigned int psrIds[], int psrCnt) {
    (void)timeout; (void)psrIds; (void)psrCnt;
    const char* ctrl = param(params, "ctrl");
    const char* ms = param(params, "ms");
    ADD(n_execs, 1);
    if (ctrl && !strcmp(ctrl, "error")) return 4242;
    if (ctrl && !strcmp(ctrl, "silent")) return 0;
    if (ctrl && !strcmp(ctrl, "stats")) {
        pDataList s = stats_node();
        callback(usrTag, s, 0);
        free_uncounted(s);
        return 0;
    }
    if (ctrl && !strcmp(ctrl, "badtag")) { /* a tag the host never gave out, then the real one */
        pDataList out = node("echo", reqData->data, reqData->len, DataOnce);
        n_second_ret = callback("no-such-tag", out, 0);
        callback(usrTag, out, 0);
        free_list(out);
        return 0;
    }
    if (ctrl && !strcmp(ctrl, "inline")) {
        pDataList out = node("echo", reqData->data, reqData->len, DataOnce);
        callback(usrTag, out, 0);
        free_list(out);
        return 0;
    }
    if (ctrl && (!strcmp(ctrl, "crash") || !strcmp(ctrl, "abort") || !strcmp(ctrl, "exit") || !strcmp(ctrl, "hang")))
        fault(ctrl);
    if (ctrl && !strcmp(ctrl, "thread_crash")) {
        pthread_t t;
        pthread_create(&t, NULL, crash_later, NULL);
        pthread_detach(t);
        return 0;
    }
    Job* j = calloc(1, sizeof(*j));
    j->tag = usrTag;
    j->cb = callback;
    j->req = reqData;
    j->ms = ms ? atol(ms) : 50;
    j->twice = ctrl && !strcmp(ctrl, "twice");
    j->fail = ctrl && !strcmp(ctrl, "fail");
    pthread_t t;
    pthread_create(&t, NULL, async_job, j);
    pthread_detach(t);
    return 0;
}

/* ---------------------------------------------------------------- sessions */
#ifndef NO_SESSIONS
typedef struct Item { pDataList list; struct Item* next; } Item;

typedef struct {
    char mode[32];
    const void* tag; /* the host's usrTag pointer, kept: used by the callback thread */
    wrapperCallback cb;
    int busy;
    int last_status;
    int frames;
    char read_fault[16]; /* a fault for the next wrapperRead, from frame data "read:<how>" */
    struct timespec ended;
    /* results waiting for wrapperRead, or for the callback thread */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    Item* head;
    Item* tail;
    int stop;
    pthread_t thread;
    pDataList given; /* what the last wrapperRead handed out: ours, freed on the next read / destroy */
} Sess;

static void enter(Sess* s) { if (__atomic_exchange_n(&s->busy, 1, __ATOMIC_SEQ_CST)) ADD(n_overlap, 1); }
static void leave(Sess* s) { __atomic_store_n(&s->busy, 0, __ATOMIC_SEQ_CST); }

static void enqueue(Sess* s, pDataList l) {
    Item* it = calloc(1, sizeof(*it));
    it->list = l;
    pthread_mutex_lock(&s->mu);
    if (s->tail) s->tail->next = it; else s->head = it;
    s->tail = it;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
}

static pDataList dequeue(Sess* s, int wait) {
    pthread_mutex_lock(&s->mu);
    while (wait && !s->head && !s->stop) pthread_cond_wait(&s->cv, &s->mu);
    Item* it = s->head;
    pDataList l = NULL;
    if (it) {
        s->head = it->next;
        if (!s->head) s->tail = NULL;
        l = it->list;
        free(it);
    }
    pthread_mutex_unlock(&s->mu);
    return l;
}

static void* pusher(void* arg) {
    Sess* s = arg;
    for (;;) {
        pDataList l = dequeue(s, 1);
        if (!l) break; /* stopped */
        sleep_ms(2);
        s->cb(s->tag, l, 0); /* from this thread, not the host's */
        free_list(l);
    }
    return NULL;
}

const void* wrapperCreate(const char* usrTag, pParamList params, wrapperCallback cb, unsigned int psrIds[],
                          int psrCnt, int* errNum) {
    (void)psrIds; (void)psrCnt;
    const char* ctrl = param(params, "ctrl");
    if (ctrl && !strcmp(ctrl, "fail")) { *errNum = 5151; return NULL; }
    if (ctrl && !strcmp(ctrl, "null")) return NULL;
    if (ctrl && (!strcmp(ctrl, "crash") || !strcmp(ctrl, "abort") || !strcmp(ctrl, "exit") || !strcmp(ctrl, "hang")))
        fault(ctrl);
    Sess* s = calloc(1, sizeof(*s));
    snprintf(s->mode, sizeof s->mode, "%s", ctrl ? ctrl : "default");
    s->tag = usrTag;
    s->cb = cb;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    if (cb) pthread_create(&s->thread, NULL, pusher, s);
    ADD(n_creates, 1);
    *errNum = 0;
    return s;
}

int wrapperWrite(const void* handle, pDataList reqData) {
    Sess* s = (Sess*)handle;
    enter(s);
    int ret = 0;
    if (!strcmp(s->mode, "writefail")) { leave(s); return 7171; }
    for (pDataList d = reqData; d; d = d->next) {
        if (!d->key) continue;
        /* frame data used as a C string (the noob-wrapper shape): the host NUL-terminates it */
        const char* text = d->data;
        fault(strcmp(text, "crash") && strcmp(text, "abort") && strcmp(text, "exit") && strcmp(text, "hang") ? NULL : text);
        if (!strncmp(text, "read:", 5)) snprintf(s->read_fault, sizeof s->read_fault, "%s", text + 5);
        s->frames++;
        s->last_status = d->status;
        if (!strcmp(s->mode, "always")) continue;
        char* up = malloc(d->len + 1);
        for (unsigned int i = 0; i < d->len; i++) {
            char c = text[i];
            up[i] = (c >= 'a' && c <= 'z') ? (char)(c - 32) : c;
        }
        DataStatus st = d->status == DataEnd || d->status == DataOnce ? DataEnd : DataContinue;
        pDataList out = node("echo", up, d->len, st);
        free(up);
        if (!strcmp(s->mode, "late")) {
            clock_gettime(CLOCK_MONOTONIC, &s->ended);
            if (st != DataEnd) { free_list(out); continue; }
        }
        enqueue(s, out);
    }
    leave(s);
    return ret;
}

static char always_key[] = "echo", always_data[] = "ALWAYS";
static struct DataList always_node = {always_key, always_data, 6, DataText, DataContinue, NULL, NULL};

int wrapperRead(const void* handle, pDataList* respData) {
    Sess* s = (Sess*)handle;
    enter(s);
    if (s->read_fault[0]) fault(s->read_fault);
    if (!strcmp(s->mode, "readfail")) { leave(s); return 6161; }
    if (!strcmp(s->mode, "always")) {
        /* wrapper_catch's shape: one shared static list, every read "has data" */
        always_node.status = s->last_status == DataEnd ? DataEnd : DataContinue;
        *respData = &always_node;
        leave(s);
        return 0;
    }
    if (!strcmp(s->mode, "late") && s->head) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long ms = (now.tv_sec - s->ended.tv_sec) * 1000 + (now.tv_nsec - s->ended.tv_nsec) / 1000000;
        if (ms < 120) { *respData = NULL; leave(s); return 0; }
    }
    free_list(s->given);
    s->given = dequeue(s, 0);
    *respData = s->given;
    leave(s);
    return 0;
}

int wrapperDestroy(const void* handle) {
    Sess* s = (Sess*)handle;
    enter(s);
    if (!strncmp(s->mode, "destroy:", 8)) fault(s->mode + 8);
    if (s->cb) {
        pthread_mutex_lock(&s->mu);
        s->stop = 1;
        pthread_cond_signal(&s->cv);
        pthread_mutex_unlock(&s->mu);
        pthread_join(s->thread, NULL);
    }
    pDataList l;
    while ((l = dequeue(s, 0))) free_list(l);
    free_list(s->given);
    leave(s);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
    ADD(n_destroys, 1);
    return 0;
}
#endif

/* ---------------------------------------------------------------- never called by upstream */
int wrapperSetCtrl(CtrlType type, void* func) { (void)type; (void)func; return 0; }
int wrapperLoadRes(pDataList perData, unsigned int resId) { (void)perData; (void)resId; return 0; }
int wrapperUnloadRes(unsigned int resId) { (void)resId; return 0; }
const char* wrapperDebugInfo(const void* handle) { (void)handle; return "demo"; }
