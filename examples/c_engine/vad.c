/*
 * vad.c -- a streaming voice-activity detector as an AIGES C engine (libwrapper.so).
 *
 * Input: 16 kHz, mono, 16-bit little-endian PCM ("audio").  The signal is cut into 10 ms frames
 * (160 samples); a frame is loud when its energy is at least threshold_db dBFS.  A segment starts
 * at the first of min_speech_ms of consecutive loud frames and ends after the last loud frame,
 * once hangover_ms of quiet frames followed it (or at the end of the audio).  Leftover samples
 * shorter than a frame at the end are not counted.
 *
 * Once ([aiges] asyncMode = true: wrapperExecAsync, answered from a thread of its own; false:
 *   wrapperExec): the whole clip in, {"segments":[{"start_ms":..,"end_ms":..},...],"duration_ms":..}
 *   out (key "segments", status Once).
 * Session: audio in chunks of any size (even odd byte counts); each segment is pushed as soon as
 *   it closes, {"segment":{"start_ms":..,"end_ms":..}} (status Continue), by the callback from the
 *   session's own thread (asyncMode = true) or handed to wrapperRead (false); after the last chunk
 *   the once answer for the whole stream (status End).
 * Params: threshold_db (default -40), hangover_ms (200), min_speech_ms (30).
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wrapper.h"

#define RATE 16000
#define FRAME 160 /* samples per 10 ms */
#define FRAME_MS 10
#define ERR_NO_AUDIO 200
#define ERR_FORMAT 201
#define ERR_PARAM 202
#define ERR_MEMORY 203

/* ---------------------------------------------------------------- the detector */
typedef struct {
    double threshold;     /* energy (sum of squares over a frame) of threshold_db */
    long hangover;        /* frames */
    long min_speech;      /* frames */
    long frame;           /* index of the next frame */
    long run, run_start;  /* consecutive loud frames while not in a segment */
    int in_speech;
    long seg_start, last_loud;
    int64_t acc;          /* energy of the frame being filled */
    int filled;           /* its samples so far */
    unsigned char odd;    /* a byte left from a chunk of odd length */
    int has_odd;
    char* segments;       /* "{..},{..}" of every closed segment, for the final answer */
    size_t seg_len, seg_cap;
    long count;
} Vad;

typedef void (*on_segment)(void* ctx, long start_ms, long end_ms);

static const char* param(pParamList p, const char* key) {
    for (; p; p = p->next)
        if (p->key && strcmp(p->key, key) == 0) return p->value;
    return NULL;
}

static int int_param(pParamList p, const char* key, long lo, long hi, long dflt, long* out) {
    const char* v = param(p, key);
    if (!v) { *out = dflt; return 0; }
    char* end;
    long n = strtol(v, &end, 10);
    if (end == v || *end || n < lo || n > hi) return ERR_PARAM;
    *out = n;
    return 0;
}

static int vad_init(Vad* v, pParamList params) {
    long db, hang, minsp;
    memset(v, 0, sizeof(*v));
    if (int_param(params, "threshold_db", -90, 0, -40, &db) || int_param(params, "hangover_ms", 10, 2000, 200, &hang) ||
        int_param(params, "min_speech_ms", 10, 1000, 30, &minsp))
        return ERR_PARAM;
    v->threshold = (double)FRAME * 32768.0 * 32768.0 * pow(10.0, (double)db / 10.0);
    v->hangover = (hang + FRAME_MS - 1) / FRAME_MS;
    v->min_speech = (minsp + FRAME_MS - 1) / FRAME_MS;
    return 0;
}

static int remember(Vad* v, long start_ms, long end_ms) {
    char item[64];
    int n = snprintf(item, sizeof item, "%s{\"start_ms\":%ld,\"end_ms\":%ld}", v->count ? "," : "", start_ms, end_ms);
    if (v->seg_len + (size_t)n + 1 > v->seg_cap) {
        size_t cap = v->seg_cap ? v->seg_cap * 2 : 256;
        char* grown = realloc(v->segments, cap);
        if (!grown) return ERR_MEMORY;
        v->segments = grown;
        v->seg_cap = cap;
    }
    memcpy(v->segments + v->seg_len, item, (size_t)n + 1);
    v->seg_len += (size_t)n;
    v->count++;
    return 0;
}

static void close_segment(Vad* v, on_segment cb, void* ctx) {
    long start_ms = v->seg_start * FRAME_MS, end_ms = (v->last_loud + 1) * FRAME_MS;
    v->in_speech = 0;
    v->run = 0;
    remember(v, start_ms, end_ms);
    if (cb) cb(ctx, start_ms, end_ms);
}

static void end_frame(Vad* v, on_segment cb, void* ctx) {
    long i = v->frame++;
    int loud = (double)v->acc >= v->threshold;
    v->acc = 0;
    v->filled = 0;
    if (v->in_speech) {
        if (loud) v->last_loud = i;
        else if (i - v->last_loud >= v->hangover) close_segment(v, cb, ctx);
        return;
    }
    if (!loud) { v->run = 0; return; }
    if (v->run++ == 0) v->run_start = i;
    if (v->run >= v->min_speech) {
        v->in_speech = 1;
        v->seg_start = v->run_start;
        v->last_loud = i;
    }
}

/* feed bytes of s16le PCM; cb(ctx, start, end) for each segment that closes */
static void vad_feed(Vad* v, const unsigned char* p, size_t n, on_segment cb, void* ctx) {
    size_t i = 0;
    if (v->has_odd && n) {
        int16_t s = (int16_t)(v->odd | (p[0] << 8));
        v->acc += (int64_t)s * s;
        if (++v->filled == FRAME) end_frame(v, cb, ctx);
        v->has_odd = 0;
        i = 1;
    }
    for (; i + 1 < n; i += 2) {
        int16_t s = (int16_t)(p[i] | (p[i + 1] << 8));
        v->acc += (int64_t)s * s;
        if (++v->filled == FRAME) end_frame(v, cb, ctx);
    }
    if (i < n) { v->odd = p[i]; v->has_odd = 1; }
}

/* end of the audio: close an open segment; the answer for the whole stream (malloc'd) */
static char* vad_finish(Vad* v, on_segment cb, void* ctx) {
    if (v->in_speech) close_segment(v, cb, ctx);
    size_t size = v->seg_len + 80;
    char* out = malloc(size);
    if (out) snprintf(out, size, "{\"segments\":[%s],\"duration_ms\":%ld}", v->segments ? v->segments : "",
                      v->frame * FRAME_MS);
    return out;
}

static void vad_free(Vad* v) { free(v->segments); }

/* ---------------------------------------------------------------- data lists */
static pDataList item(char* json, DataStatus status) {
    pDataList d = calloc(1, sizeof(*d));
    if (!d) { free(json); return NULL; }
    d->key = strdup("segments");
    d->data = json;
    d->len = (unsigned int)strlen(json);
    d->type = DataText;
    d->status = status;
    return d;
}

static void free_items(pDataList d) {
    while (d) {
        pDataList next = d->next;
        free(d->key);
        free(d->data);
        free(d);
        d = next;
    }
}

/* the "audio" item of a request, after checking what its description says of the format */
static int audio_of(pDataList req, pDataList* out) {
    for (pDataList d = req; d; d = d->next) {
        if (!d->key || strcmp(d->key, "audio") != 0) continue;
        const char* rate = param(d->desc, "sample_rate");
        const char* channels = param(d->desc, "channels");
        const char* encoding = param(d->desc, "encoding");
        if ((rate && strcmp(rate, "16000") != 0) || (channels && strcmp(channels, "1") != 0) ||
            (encoding && strcmp(encoding, "raw") != 0 && strcmp(encoding, "pcm") != 0))
            return ERR_FORMAT;
        *out = d;
        return 0;
    }
    return ERR_NO_AUDIO;
}

static char* detect_clip(pParamList params, pDataList req, int* err) {
    pDataList audio;
    Vad v;
    if ((*err = audio_of(req, &audio)) || (*err = vad_init(&v, params))) return NULL;
    vad_feed(&v, audio->data, audio->len, NULL, NULL);
    char* json = vad_finish(&v, NULL, NULL);
    vad_free(&v);
    *err = json ? 0 : ERR_MEMORY;
    return json;
}

/* ---------------------------------------------------------------- lifecycle */
int wrapperInit(pConfig cfg) { (void)cfg; return 0; }
int wrapperFini(void) { return 0; }
const char* wrapperVersion(void) { return "vad 1.0 (energy, 10 ms frames, 16 kHz s16le mono)"; }

const char* wrapperError(int errNum) {
    switch (errNum) {
    case ERR_NO_AUDIO: return "payload 'audio' is missing";
    case ERR_FORMAT: return "audio must be raw 16 kHz mono 16-bit PCM (sample_rate 16000, channels 1, encoding raw)";
    case ERR_PARAM: return "threshold_db must be -90..0, hangover_ms 10..2000, min_speech_ms 10..1000 (integers)";
    case ERR_MEMORY: return "out of memory";
    default: return NULL;
    }
}

/* ---------------------------------------------------------------- once */
int wrapperExec(const char* usrTag, pParamList params, pDataList reqData, pDataList* respData,
                unsigned int psrIds[], int psrCnt) {
    (void)usrTag; (void)psrIds; (void)psrCnt;
    int err;
    char* json = detect_clip(params, reqData, &err);
    if (err) return err;
    *respData = item(json, DataOnce);
    return *respData ? 0 : ERR_MEMORY;
}

int wrapperExecFree(const char* usrTag, pDataList* respData) {
    (void)usrTag;
    free_items(*respData);
    *respData = NULL;
    return 0;
}

typedef struct {
    char* tag;
    wrapperCallback cb;
    Vad vad;
    unsigned char* audio; /* a copy: the host's input is only valid during wrapperExecAsync */
    size_t len;
} OnceJob;

static void* once_thread(void* arg) {
    OnceJob* j = arg;
    vad_feed(&j->vad, j->audio, j->len, NULL, NULL);
    char* json = vad_finish(&j->vad, NULL, NULL);
    pDataList d = json ? item(json, DataOnce) : NULL;
    if (d) j->cb(j->tag, d, 0);
    else j->cb(j->tag, NULL, ERR_MEMORY);
    free_items(d); /* the host copied it during the callback */
    vad_free(&j->vad);
    free(j->audio);
    free(j->tag);
    free(j);
    return NULL;
}

int wrapperExecAsync(const char* usrTag, pParamList params, pDataList reqData, wrapperCallback callback,
                     int timeout, unsigned int psrIds[], int psrCnt) {
    (void)timeout; (void)psrIds; (void)psrCnt;
    pDataList audio;
    int err = audio_of(reqData, &audio);
    if (err) return err;
    OnceJob* j = calloc(1, sizeof(*j));
    if (!j) return ERR_MEMORY;
    if ((err = vad_init(&j->vad, params))) { free(j); return err; }
    j->tag = strdup(usrTag);
    j->cb = callback;
    j->len = audio->len;
    j->audio = malloc(audio->len ? audio->len : 1);
    if (!j->tag || !j->audio) { free(j->tag); free(j->audio); free(j); return ERR_MEMORY; }
    memcpy(j->audio, audio->data, audio->len);
    pthread_t t;
    if (pthread_create(&t, NULL, once_thread, j)) { free(j->audio); free(j->tag); free(j); return ERR_MEMORY; }
    pthread_detach(t);
    return 0; /* the answer comes from once_thread */
}

/* ---------------------------------------------------------------- sessions */
typedef struct Chunk { unsigned char* data; size_t len; int last; struct Chunk* next; } Chunk;

typedef struct {
    char* tag;
    wrapperCallback cb;          /* NULL: results wait for wrapperRead */
    Vad vad;
    pthread_t thread;            /* the session's own thread: detection and callbacks run there */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    Chunk *head, *tail;          /* audio waiting for the thread */
    int stop;
    pDataList results, given;    /* results for wrapperRead; the list the last read returned */
} Session;

static void deliver(Session* s, pDataList d) {
    if (!d) return;
    if (s->cb) {
        s->cb(s->tag, d, 0);
        free_items(d);
        return;
    }
    pthread_mutex_lock(&s->mu);
    pDataList* tail = &s->results;
    while (*tail) tail = &(*tail)->next;
    *tail = d;
    pthread_mutex_unlock(&s->mu);
}

static void segment_closed(void* ctx, long start_ms, long end_ms) {
    char* json = malloc(64);
    if (!json) return;
    snprintf(json, 64, "{\"segment\":{\"start_ms\":%ld,\"end_ms\":%ld}}", start_ms, end_ms);
    deliver((Session*)ctx, item(json, DataContinue));
}

static void* session_thread(void* arg) {
    Session* s = arg;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (!s->head && !s->stop) pthread_cond_wait(&s->cv, &s->mu);
        if (s->stop) { /* destroyed: what was not processed is dropped */
            while (s->head) { Chunk* c = s->head; s->head = c->next; free(c->data); free(c); }
            pthread_mutex_unlock(&s->mu);
            return NULL;
        }
        Chunk* c = s->head;
        s->head = c->next;
        if (!s->head) s->tail = NULL;
        pthread_mutex_unlock(&s->mu);
        vad_feed(&s->vad, c->data, c->len, segment_closed, s);
        if (c->last) {
            char* json = vad_finish(&s->vad, segment_closed, s);
            if (json) deliver(s, item(json, DataEnd));
        }
        free(c->data);
        free(c);
    }
}

const void* wrapperCreate(const char* usrTag, pParamList params, wrapperCallback cb, unsigned int psrIds[],
                          int psrCnt, int* errNum) {
    (void)psrIds; (void)psrCnt;
    Session* s = calloc(1, sizeof(*s));
    if (!s) { *errNum = ERR_MEMORY; return NULL; }
    if ((*errNum = vad_init(&s->vad, params))) { free(s); return NULL; }
    s->tag = strdup(usrTag);
    s->cb = cb;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    if (!s->tag || pthread_create(&s->thread, NULL, session_thread, s)) {
        free(s->tag);
        free(s);
        *errNum = ERR_MEMORY;
        return NULL;
    }
    return s;
}

int wrapperWrite(const void* handle, pDataList reqData) {
    Session* s = (Session*)handle;
    pDataList audio;
    int err = audio_of(reqData, &audio);
    if (err) return err;
    Chunk* c = calloc(1, sizeof(*c));
    if (!c) return ERR_MEMORY;
    c->len = audio->len;
    c->data = malloc(audio->len ? audio->len : 1); /* a copy: the host's data goes when we return */
    if (!c->data) { free(c); return ERR_MEMORY; }
    memcpy(c->data, audio->data, audio->len);
    c->last = audio->status == DataEnd || audio->status == DataOnce;
    pthread_mutex_lock(&s->mu);
    if (s->tail) s->tail->next = c; else s->head = c;
    s->tail = c;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

int wrapperRead(const void* handle, pDataList* respData) {
    Session* s = (Session*)handle;
    pthread_mutex_lock(&s->mu);
    free_items(s->given);
    s->given = s->results; /* one result per read */
    if (s->given) { s->results = s->given->next; s->given->next = NULL; }
    *respData = s->given;
    pthread_mutex_unlock(&s->mu);
    return 0;
}

int wrapperDestroy(const void* handle) {
    Session* s = (Session*)handle;
    pthread_mutex_lock(&s->mu);
    s->stop = 1; /* the thread ends after the chunk it is on: no callback once we return */
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    free_items(s->results);
    free_items(s->given);
    vad_free(&s->vad);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s->tag);
    free(s);
    return 0;
}

/* ---------------------------------------------------------------- not used by this engine */
int wrapperSetCtrl(CtrlType type, void* func) { (void)type; (void)func; return 0; }
int wrapperLoadRes(pDataList perData, unsigned int resId) { (void)perData; (void)resId; return 0; }
int wrapperUnloadRes(unsigned int resId) { (void)resId; return 0; }
const char* wrapperDebugInfo(const void* handle) { (void)handle; return ""; }
