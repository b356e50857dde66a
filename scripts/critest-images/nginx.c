/* Stand-in for critest's nginx test images (registry.k8s.io/e2e-test-images/
 * nginx:1.14-2, gcr.io/k8s-staging-cri-tools/hostnet-nginx-amd64): what the
 * specs look at, done for real. It writes its pid to /var/run/nginx.pid, is
 * found by `pidof nginx` (its executable is named nginx), shows
 * "nginx: master process ..." in /proc/PID/cmdline as nginx's master does,
 * and answers every HTTP request with 200 on the port of the `listen N;`
 * line of /etc/nginx/conf.d/default.conf (80 without one). SIGTERM, SIGINT
 * and SIGQUIT end it (as pid 1 of a container, no default action would). */
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define TITLE "nginx: master process nginx -g daemon off;"
#define PAGE "<!DOCTYPE html><title>Welcome to nginx!</title><h1>Welcome to nginx!</h1>\n"

static void leave(int sig) { (void)sig; _exit(0); }

static int configured_port(void) {
    FILE *f = fopen("/etc/nginx/conf.d/default.conf", "r");
    char line[256];
    int port = 80;
    if (!f) return port;
    /* "listen N;" anywhere in a line: "server { listen 12003; }" too. */
    while (fgets(line, sizeof line, f)) {
        char *l = strstr(line, "listen");
        if (l && sscanf(l, "listen %d;", &port) == 1) break;
    }
    fclose(f);
    return port;
}

int main(int argc, char **argv) {
    /* The master's title is its argv: exec ourselves under it once. */
    if (argc < 1 || strcmp(argv[0], TITLE) != 0) {
        char *title[] = {TITLE, NULL};
        execv("/proc/self/exe", title);
        perror("nginx: re-exec");
        return 1;
    }
    signal(SIGTERM, leave);
    signal(SIGINT, leave);
    signal(SIGQUIT, leave);
    signal(SIGPIPE, SIG_IGN);

    int port = configured_port();
    int s = socket(AF_INET6, SOCK_STREAM, 0), one = 1, zero = 0;
    if (s < 0) { perror("nginx: socket"); return 1; }
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_port = htons(port)};
    if (bind(s, (struct sockaddr *)&a, sizeof a) || listen(s, 64)) {
        perror("nginx: bind/listen");
        return 1;
    }
    FILE *pid = fopen("/var/run/nginx.pid", "w");
    if (!pid) { perror("nginx: /var/run/nginx.pid"); return 1; }
    fprintf(pid, "%d\n", getpid());
    fclose(pid);
    fprintf(stderr, "nginx stand-in: listening on port %d\n", port);

    char buf[4096], head[256];
    for (;;) {
        int c = accept(s, NULL, NULL);
        if (c < 0) continue;
        /* A client that sends nothing must not stall the others. */
        struct timeval t = {.tv_sec = 5};
        setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &t, sizeof t);
        /* The request line is enough: every path gets the page. */
        if (read(c, buf, sizeof buf) > 0) {
            int n = snprintf(head, sizeof head,
                             "HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: text/html\r\n"
                             "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                             strlen(PAGE));
            if (write(c, head, n) == n) (void)!write(c, PAGE, strlen(PAGE));
        }
        close(c);
    }
}
