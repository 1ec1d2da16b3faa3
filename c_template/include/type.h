/*
 * type.h -- data types of the AIGES C engine interface (written for aiges; binary-compatible with
 * iFlytek AIGES's cgo/header/widget/type.h: same names, same values, same struct layouts).
 *
 * On x86-64 Linux: struct ParamList is 32 bytes (key 0, value 8, vlen 16, next 24) and
 * struct DataList 48 bytes (key 0, data 8, len 16, type 20, status 24, desc 32, next 40);
 * every enum is an int (4 bytes).  Do not reorder or add fields: the host reads these bytes.
 */
#ifndef AIGES_C_TYPE_H
#define AIGES_C_TYPE_H

/* Exported symbols must be visible from the shared library (build with -fvisibility=hidden
   freely: the interface functions carry this attribute). */
#ifndef WrapperAPI
#define WrapperAPI __attribute__((visibility("default")))
#endif

/* wrapperSetCtrl: which host service a function pointer is. */
typedef enum {
    CTMeterCustom = 0,  /* int (*)(const void* usrTag, const char* meterKey, int count) */
    CTMetricsLog  = 1,  /* reserved */
    CTTraceLog    = 2,  /* int (*)(const char* usrTag, const char* key, const char* value) */
} CtrlType;

/* What a data item holds (the envelope's payload kinds). */
typedef enum {
    DataText  = 0,
    DataAudio = 1,
    DataImage = 2,
    DataVideo = 3,
    DataPer   = 4,  /* personalisation resource */
} DataType;

/* Where a data item stands in its stream. */
typedef enum {
    DataBegin    = 0,  /* first frame of a session */
    DataContinue = 1,  /* a middle frame */
    DataEnd      = 2,  /* the last frame / the final result */
    DataOnce     = 3,  /* a whole request or answer outside a session */
} DataStatus;

/* A key/value list: request params, the [wrapper] config, a data item's description.
   An empty list is not NULL: it is one node whose key is NULL.  value is NUL-terminated and
   vlen is its length. */
typedef struct ParamList {
    char*             key;
    char*             value;
    unsigned int      vlen;
    struct ParamList* next;
} *pParamList, *pConfig, *pDescList;

/* A list of data items.  data is len bytes; the host's input data is followed by a NUL byte
   (not counted in len), the host never relies on one in your output. */
typedef struct DataList {
    char*            key;
    void*            data;
    unsigned int     len;
    DataType         type;
    DataStatus       status;
    pDescList        desc;
    struct DataList* next;
} *pDataList;

#endif /* AIGES_C_TYPE_H */
