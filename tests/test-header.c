/* Header hygiene: the public header alone compiles as C11 with -pedantic -Werror (this file)
 * and as C++ (test-header.cpp). */
#include <clgrad/clgrad.h>

int main(void) {
    return clg_status_name(CLG_OK)[0] == 'C' ? 0 : 1;
}
