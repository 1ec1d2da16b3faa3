// A C++ engine that forgot extern "C" (it includes type.h but not wrapper.h): its symbols are
// mangled (_Z11wrapperInitP9ParamList ...), so the host finds none of them.
#include "type.h"

int wrapperInit(pConfig cfg) { return cfg ? 0 : 1; }
int wrapperExec(const char*, pParamList, pDataList, pDataList* respData, unsigned int[], int) {
    *respData = nullptr;
    return 0;
}
int wrapperExecFree(const char*, pDataList*) { return 0; }
