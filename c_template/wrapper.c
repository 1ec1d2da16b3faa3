/*
 * {{name}}: a C engine for aiges (and upstream AIGES), created by `aiges create --lang c` on {{date}}.
 *
 * What it does now (replace analyse() and wrapperInit() with your model):
 *   input   "text"     text (its test value is test_data/hello.txt)
 *   param   "mode"     "upper" (default) or "lower"
 *   output  "result"   text: JSON {"text": the text re-cased, "chars": N, "words": N}
 *
 * Build:  make               (-> libwrapper.so, the name upstream AIGES loads)
 * Check:  aiges check        (init, once and a session with the test values of wrapper.py)
 * Serve:  aiges -m 0         (Swagger UI at http://127.0.0.1:1888/)
 *
 * The interface is include/wrapper.h (binary-compatible with upstream's).  The rules that matter:
 * - inputs (params, data) are the host's and valid only during the call: copy what you keep;
 * - wrapperExec's results are yours and come back to wrapperExecFree; wrapperRead's and the
 *   callback's stay yours (the host copies them during the call);
 * - several requests run at once ([aiges] workerThreads): no unguarded globals;
 * - the calls of one session never overlap; wrapperDestroy comes exactly once per session.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "wrapper.h"

#define ERR_NO_TEXT 100  /* your own codes: the client gets them with wrapperError's text */
#define ERR_BAD_MODE 101
#define ERR_NO_MEMORY 102

static const char* param(pParamList p, const char* key) {
    for (; p; p = p->next) /* an empty list is one node whose key is NULL */
        if (p->key && strcmp(p->key, key) == 0) return p->value;
    return NULL;
}

static const char* config_value(pConfig cfg, const char* key) { return param(cfg, key); }

/* ---------------------------------------------------------------- the "model" */
static int upper_of(pParamList params, int* upper) {
    const char* mode = param(params, "mode");
    if (!mode || strcmp(mode, "upper") == 0) { *upper = 1; return 0; }
    if (strcmp(mode, "lower") == 0) { *upper = 0; return 0; }
    return ERR_BAD_MODE;
}

/* {"text": "...", "chars": N, "words": N} for len bytes of text; malloc'd, NULL when out of memory */
static char* analyse(const char* text, unsigned int len, int upper) {
    char* out = malloc(len * 6 + 64); /* worst case: every byte escaped as \u00XX */
    if (!out) return NULL;
    char* p = out + sprintf(out, "{\"text\":\"");
    unsigned int words = 0;
    int in_word = 0;
    for (unsigned int i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if (isspace(c)) in_word = 0;
        else if (!in_word) { in_word = 1; words++; }
        if (c < 0x80) c = (unsigned char)(upper ? toupper(c) : tolower(c));
        if (c == '"' || c == '\\') { *p++ = '\\'; *p++ = (char)c; }
        else if (c < 0x20) p += sprintf(p, "\\u%04x", c);
        else *p++ = (char)c;
    }
    sprintf(p, "\",\"chars\":%u,\"words\":%u}", len, words);
    return out;
}

/* one output item: key "result", the JSON as its data */
static pDataList result_item(char* json, DataStatus status) {
    pDataList item = calloc(1, sizeof(*item));
    if (!item) { free(json); return NULL; }
    item->key = strdup("result");
    item->data = json;
    item->len = (unsigned int)strlen(json);
    item->type = DataText;
    item->status = status;
    return item;
}

static void free_items(pDataList item) {
    while (item) {
        pDataList next = item->next;
        free(item->key);
        free(item->data);
        free(item);
        item = next;
    }
}

/* the result for one request or frame; *err is set on failure */
static pDataList run(pParamList params, int upper_from_params, int upper, pDataList req, DataStatus status,
                     int* err) {
    if (upper_from_params && (*err = upper_of(params, &upper)) != 0) return NULL;
    for (pDataList d = req; d; d = d->next) {
        if (!d->key || strcmp(d->key, "text") != 0) continue;
        char* json = analyse((const char*)d->data, d->len, upper);
        pDataList item = json ? result_item(json, status) : NULL;
        *err = item ? 0 : ERR_NO_MEMORY;
        return item;
    }
    *err = ERR_NO_TEXT;
    return NULL;
}

/* ---------------------------------------------------------------- lifecycle */
int wrapperInit(pConfig cfg) {
    /* cfg: the [wrapper] section of aiges.toml, as strings.  Load your model here. */
    const char* level = config_value(cfg, "log.level");
    fprintf(stderr, "{{name}}: wrapperInit (log.level=%s)\n", level ? level : "-");
    return 0;
}

int wrapperFini(void) { return 0; }

const char* wrapperError(int errNum) {
    switch (errNum) {
    case ERR_NO_TEXT: return "payload 'text' is missing";
    case ERR_BAD_MODE: return "parameter 'mode' must be upper or lower";
    case ERR_NO_MEMORY: return "out of memory";
    default: return NULL;
    }
}

const char* wrapperVersion(void) { return "{{name}} 0.1"; }

/* ---------------------------------------------------------------- once: [aiges] asyncMode = false */
int wrapperExec(const char* usrTag, pParamList params, pDataList reqData, pDataList* respData,
                unsigned int psrIds[], int psrCnt) {
    (void)usrTag; (void)psrIds; (void)psrCnt;
    int err = 0;
    *respData = run(params, 1, 1, reqData, DataOnce, &err);
    return err;
}

int wrapperExecFree(const char* usrTag, pDataList* respData) {
    (void)usrTag;
    free_items(*respData);
    *respData = NULL;
    return 0;
}

/* ---------------------------------------------------------------- once: [aiges] asyncMode = true */
int wrapperExecAsync(const char* usrTag, pParamList params, pDataList reqData, wrapperCallback callback,
                     int timeout, unsigned int psrIds[], int psrCnt) {
    (void)timeout; (void)psrIds; (void)psrCnt;
    /* this skeleton answers at once; a real engine queues the work (copying its inputs) and
       calls back from its own thread -- see examples/c_engine in aiges */
    int err = 0;
    pDataList result = run(params, 1, 1, reqData, DataOnce, &err);
    if (err) return err;
    callback(usrTag, result, 0);
    free_items(result); /* the host copied it */
    return 0;
}

/* ---------------------------------------------------------------- streaming sessions */
typedef struct {
    int upper;
    char* tag;           /* a copy of usrTag, for the callback */
    wrapperCallback cb;  /* NULL: results are fetched with wrapperRead */
    pDataList pending;   /* results not read yet, oldest first */
    pDataList given;     /* what the last wrapperRead returned: ours until the next read or destroy */
} Session;

const void* wrapperCreate(const char* usrTag, pParamList params, wrapperCallback cb, unsigned int psrIds[],
                          int psrCnt, int* errNum) {
    (void)psrIds; (void)psrCnt;
    Session* s = calloc(1, sizeof(*s));
    if (!s) { *errNum = ERR_NO_MEMORY; return NULL; }
    if ((*errNum = upper_of(params, &s->upper)) != 0) { free(s); return NULL; }
    s->tag = strdup(usrTag ? usrTag : "");
    s->cb = cb;
    return s;
}

int wrapperWrite(const void* handle, pDataList reqData) {
    Session* s = (Session*)handle;
    DataStatus status = DataContinue;
    for (pDataList d = reqData; d; d = d->next)
        if (d->key && (d->status == DataEnd || d->status == DataOnce)) status = DataEnd;
    int err = 0;
    pDataList result = run(NULL, 0, s->upper, reqData, status, &err);
    if (err) return err;
    if (s->cb) { /* [aiges] asyncMode = true: push it now (from any thread you like) */
        s->cb(s->tag, result, 0);
        free_items(result);
        return 0;
    }
    pDataList* tail = &s->pending; /* else keep it for wrapperRead */
    while (*tail) tail = &(*tail)->next;
    *tail = result;
    return 0;
}

int wrapperRead(const void* handle, pDataList* respData) {
    Session* s = (Session*)handle;
    free_items(s->given); /* the host copied the previous answer */
    s->given = s->pending; /* one result per read: the next one waits for the next read */
    if (s->given) {
        s->pending = s->given->next;
        s->given->next = NULL;
    }
    *respData = s->given; /* NULL: nothing yet */
    return 0;
}

int wrapperDestroy(const void* handle) {
    Session* s = (Session*)handle;
    free_items(s->pending);
    free_items(s->given);
    free(s->tag);
    free(s);
    return 0;
}

/* ---------------------------------------------------------------- the rest of upstream's interface */
int wrapperSetCtrl(CtrlType type, void* func) { (void)type; (void)func; return 0; }
int wrapperLoadRes(pDataList perData, unsigned int resId) { (void)perData; (void)resId; return 0; }
int wrapperUnloadRes(unsigned int resId) { (void)resId; return 0; }
const char* wrapperDebugInfo(const void* handle) { (void)handle; return ""; }
