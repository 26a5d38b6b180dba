// Header hygiene: the public header compiles as C++ and its functions link with C linkage.
#include <clgrad/clgrad.h>

int main() {
    clg_dtype d = CLG_F32;
    return clg_dtype_size(d) == 4 ? 0 : 1;
}
