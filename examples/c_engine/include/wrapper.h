/*
 * wrapper.h -- the functions an AIGES C engine (libwrapper.so) exports (written for aiges;
 * binary-compatible with iFlytek AIGES's cgo/header/widget/wrapper.h: same symbols, same
 * signatures).  Compile C++ with this header included so the symbols get C linkage.
 *
 * Ownership: everything the host passes in is valid only during the call (copy what you keep,
 * also for wrapperExecAsync); results of wrapperExec are yours and come back to wrapperExecFree;
 * results of wrapperRead and of a callback stay yours (the host copies them during the call).
 * Calls may come from several threads at once (aiges: [aiges] workerThreads), never two for one
 * session handle at a time.
 */
#ifndef AIGES_C_WRAPPER_H
#define AIGES_C_WRAPPER_H

#include "type.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Implemented by the host, called by you from any thread: usrTag as given to wrapperCreate or
   wrapperExecAsync, ret != 0 reports a failure (respData is then ignored).  respData stays yours.
   Returns 0, or -1 when the tag is unknown or its request already has its answer. */
typedef int (*wrapperCallback)(const void* usrTag, pDataList respData, int ret);

/* Host services handed to you before wrapperInit (when exported). */
WrapperAPI int wrapperSetCtrl(CtrlType type, void* func);
typedef int (*wrapperSetCtrlPtr)(CtrlType type, void* func);

/* Once per process, before any request: cfg holds the [wrapper] section as strings.
   Non-zero fails the start (its text comes from wrapperError). */
WrapperAPI int wrapperInit(pConfig cfg);
typedef int (*wrapperInitPtr)(pConfig cfg);

/* Once at shutdown, after the last request. */
WrapperAPI int wrapperFini(void);
typedef int (*wrapperFiniPtr)(void);

/* The text of one of your error codes; the string stays yours (keep it static). */
WrapperAPI const char* wrapperError(int errNum);
typedef const char* (*wrapperErrorPtr)(int errNum);

/* Your version string (logged at start). */
WrapperAPI const char* wrapperVersion(void);
typedef const char* (*wrapperVersionPtr)(void);

/* Personalisation resources (not called by aiges, as by upstream). */
WrapperAPI int wrapperLoadRes(pDataList perData, unsigned int resId);
typedef int (*wrapperLoadResPtr)(pDataList perData, unsigned int resId);
WrapperAPI int wrapperUnloadRes(unsigned int resId);
typedef int (*wrapperUnloadResPtr)(unsigned int resId);

/* Start a streaming session.  cb is NULL when results are fetched with wrapperRead
   ([aiges] asyncMode = false) and the host's callback otherwise.  Return your handle; failure is
   *errNum != 0 or a NULL handle.  psrIds is NULL and psrCnt 0. */
WrapperAPI const void* wrapperCreate(const char* usrTag, pParamList params, wrapperCallback cb,
                                     unsigned int psrIds[], int psrCnt, int* errNum);
typedef const void* (*wrapperCreatePtr)(const char* usrTag, pParamList params, wrapperCallback cb,
                                                  unsigned int psrIds[], int psrCnt, int* errNum);

/* One frame of a session (one item per input key). */
WrapperAPI int wrapperWrite(const void* handle, pDataList reqData);
typedef int (*wrapperWritePtr)(const void* handle, pDataList reqData);

/* Results of a session without callback: set *respData (or leave it NULL: nothing yet).
   The list stays yours; free it in wrapperDestroy or on the next read. */
WrapperAPI int wrapperRead(const void* handle, pDataList* respData);
typedef int (*wrapperReadPtr)(const void* handle, pDataList* respData);

/* End a session: called exactly once per successful wrapperCreate. */
WrapperAPI int wrapperDestroy(const void* handle);
typedef int (*wrapperDestroyPtr)(const void* handle);

/* One whole request, blocking ([aiges] asyncMode = false): set *respData to a list you
   allocate; the host hands it back to wrapperExecFree with the same usrTag. */
WrapperAPI int wrapperExec(const char* usrTag, pParamList params, pDataList reqData, pDataList* respData,
                           unsigned int psrIds[], int psrCnt);
typedef int (*wrapperExecPtr)(const char* usrTag, pParamList params, pDataList reqData,
                                        pDataList* respData, unsigned int psrIds[], int psrCnt);

/* Free what wrapperExec returned. */
WrapperAPI int wrapperExecFree(const char* usrTag, pDataList* respData);
typedef int (*wrapperExecFreePtr)(const char* usrTag, pDataList* respData);

/* One whole request, non-blocking ([aiges] asyncMode = true): return at once and answer with
   callback(usrTag, result, 0) -- the first callback is the answer.  timeout is 0. */
WrapperAPI int wrapperExecAsync(const char* usrTag, pParamList params, pDataList reqData,
                                wrapperCallback callback, int timeout, unsigned int psrIds[], int psrCnt);
typedef int (*wrapperExecAsyncPtr)(const char* usrTag, pParamList params, pDataList reqData,
                                             wrapperCallback callback, int timeout, unsigned int psrIds[],
                                             int psrCnt);

/* Debug text of a session (not called by aiges, as by upstream). */
WrapperAPI const char* wrapperDebugInfo(const void* handle);
typedef const char* (*wrapperDebugInfoPtr)(const void* handle);

#ifdef __cplusplus
}
#endif

#endif /* AIGES_C_WRAPPER_H */
