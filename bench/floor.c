/*
 * bench/floor.c: the pacing floor of the machine the bench runs on.
 *
 *   floor IPV4 PORT PATH RATE N
 *
 * Sends N `GET PATH` requests, RATE a second, over one kept-alive HTTP/1.1
 * connection to IPV4:PORT, and prints a line per response (flushed, as
 * sluice writes a record per response). The harness runs it beside sluice's
 * paced runs, against the same upstream, which counts and times its
 * arrivals like any client's.
 *
 * Why it is a floor: this is about the least a paced HTTP/1.1 client can
 * do. One thread, no runtime, one connection opened once, and one wake-up a
 * request: a clock_nanosleep(TIMER_ABSTIME) to its due instant. The answer
 * to the request before is read then, with a recv that does not wait (it
 * came long before on loopback; only a late one is waited for), and its
 * line written; then the request. So four syscalls a request: the sleep,
 * the recv, the request's write and the line's. Reading each answer as
 * soon as it comes (a blocking read after the write) would cost a second
 * wake-up a request, which sluice does not pay at 1000/s either. What this
 * costs in CPU (the kernel's account of the process, wait4's user +
 * system) is what the machine charges for the wake-ups and syscalls
 * alone; no client paced by sleeping to each start costs less a request.
 *
 * The due instant is start + i / RATE (so the rate never drifts), but
 * never less than 1 s after the send RATE requests before (a clock read in
 * the vDSO, no syscall): a wake-up the loaded machine made late is caught
 * up without ever sending more than RATE in any second, the bound sluice
 * keeps too.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define SECOND 1000000000LL

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * SECOND + t.tv_nsec;
}

static void die(const char *what) {
    perror(what);
    exit(1);
}

/* What has been read of the connection and not yet taken. */
static char buf[65536];
static size_t used;

/* The status of the response at the start of buf, which is taken out of
 * it; -1 when it is not all there (head and Content-Length bytes). */
static int take(void) {
    buf[used] = '\0';
    char *end = strstr(buf, "\r\n\r\n");
    if (!end) return -1;
    char *length = strcasestr(buf, "\r\ncontent-length:");
    if (!length || length > end) die("a response without Content-Length");
    size_t size = (size_t)(end + 4 - buf) + strtoul(length + strlen("\r\ncontent-length:"), NULL, 10);
    if (size >= sizeof buf) die("a response larger than the buffer");
    if (used < size) return -1;
    int status = atoi(buf + strlen("HTTP/1.1 "));
    memmove(buf, buf + size, used - size);
    used -= size;
    return status;
}

/* Reads the next response and writes its line: whatever has arrived, then,
 * only if it is not all there yet, waiting for the rest. */
static void answer(int fd, long i) {
    int status, flags = MSG_DONTWAIT;
    while ((status = take()) < 0) {
        ssize_t got = recv(fd, buf + used, sizeof buf - 1 - used, flags);
        if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) flags = 0;
        else if (got < 0 && errno != EINTR) die("recv");
        else if (got == 0) die("recv (the connection closed)");
        else if (got > 0) used += (size_t)got;
    }
    printf("%ld %d\n", i, status);
    fflush(stdout);
}

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: floor IPV4 PORT PATH RATE N\n");
        return 2;
    }
    long rate = atol(argv[4]), n = atol(argv[5]);
    if (rate <= 0 || n < 0) die("RATE must be > 0 and N >= 0");
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
    if (inet_pton(AF_INET, argv[1], &addr.sin_addr) != 1) die("IPV4");
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    if (fd < 0) die("socket");
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) die("connect");

    char request[512];
    int len = snprintf(request, sizeof request, "GET %s HTTP/1.1\r\nHost: %s:%s\r\n\r\n",
                       argv[3], argv[1], argv[2]);
    if (len <= 0 || (size_t)len >= sizeof request) die("PATH too long");
    /* The last RATE sends, in ns of CLOCK_MONOTONIC, by i % RATE. */
    long long *sent = malloc((size_t)rate * sizeof *sent);
    if (!sent) die("malloc");
    for (long k = 0; k < rate; k++) sent[k] = LLONG_MIN / 2;
    long long start = now_ns();
    for (long i = 0; i < n; i++) {
        long long at = start + i * SECOND / rate;
        if (at < sent[i % rate] + SECOND) at = sent[i % rate] + SECOND;
        struct timespec due = {at / SECOND, at % SECOND};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &due, NULL) == EINTR) {}
        if (i > 0) answer(fd, i - 1);
        sent[i % rate] = now_ns();
        if (write(fd, request, (size_t)len) != len) die("write");
    }
    if (n > 0) answer(fd, n - 1);
    close(fd);
    free(sent);
    return 0;
}
