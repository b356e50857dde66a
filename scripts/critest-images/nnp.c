/* Stand-in for registry.k8s.io/e2e-test-images/nonewprivs:1.3: installed
 * setuid root as /usr/local/bin/nnp, it prints the effective uid it got —
 * 0 when the setuid bit took effect, the caller's uid under no_new_privs. */
#include <stdio.h>
#include <unistd.h>

int main(void) {
    printf("Effective uid: %d\n", (int)geteuid());
    return 0;
}
