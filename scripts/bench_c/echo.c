/*
 * echo.c -- the C counterpart of tests/wrappers/echo for scripts/bench-c: payload "text" comes
 * back as output "result" (text, status Once), through wrapperExec + wrapperExecFree.
 * Built with -DWORK_US=N it first sleeps N microseconds per call (a model that takes that long
 * without holding any lock: the "2 ms C call" of the thread-scaling measurement).
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "wrapper.h"

int wrapperInit(pConfig cfg) { (void)cfg; return 0; }
int wrapperFini(void) { return 0; }
const char* wrapperError(int errNum) { return errNum == 401 ? "echo was asked to fail" : NULL; }

int wrapperExec(const char* usrTag, pParamList params, pDataList reqData, pDataList* respData,
                unsigned int psrIds[], int psrCnt) {
    (void)usrTag; (void)params; (void)psrIds; (void)psrCnt;
#ifdef WORK_US
    struct timespec ts = {WORK_US / 1000000, (WORK_US % 1000000) * 1000L};
    nanosleep(&ts, NULL);
#endif
    pDataList in = reqData;
    while (in && (!in->key || strcmp(in->key, "text") != 0)) in = in->next;
    if (!in) return 401;
    pDataList out = calloc(1, sizeof(*out));
    out->key = strdup("result");
    out->data = malloc(in->len ? in->len : 1);
    memcpy(out->data, in->data, in->len);
    out->len = in->len;
    out->type = DataText;
    out->status = DataOnce;
    *respData = out;
    return 0;
}

int wrapperExecFree(const char* usrTag, pDataList* respData) {
    (void)usrTag;
    pDataList out = *respData;
    if (out) { free(out->key); free(out->data); free(out); }
    *respData = NULL;
    return 0;
}
