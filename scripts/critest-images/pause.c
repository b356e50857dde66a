/* Stand-in for registry.k8s.io/pause: like the real /pause, it waits for a
 * signal and ends on SIGTERM/SIGINT (berth-cri pins the pod's namespaces
 * without it; critest only pulls and removes the image). */
#include <signal.h>
#include <unistd.h>

static void leave(int sig) { (void)sig; _exit(0); }

int main(void) {
    signal(SIGTERM, leave);
    signal(SIGINT, leave);
    for (;;) pause();
}
