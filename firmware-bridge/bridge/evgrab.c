/*
 * evgrab: exclusive reader for a Linux input device, for the posko scanner bridge.
 *
 * Opens /dev/input/eventN, takes it for itself with the EVIOCGRAB ioctl (so a keyboard-wedge
 * scanner's codes are no longer typed into the console or the desktop), then copies the raw
 * `struct input_event` stream to stdout until the device goes away. Node has no ioctl; the bridge
 * (evdev.ts) spawns this helper and decodes the events itself.
 *
 *   build: cc -O2 -Wall -o evgrab evgrab.c
 *   usage: evgrab /dev/input/by-id/usb-...-event-kbd
 *
 * stderr: "evgrab: grabbed <path> (<n>-byte events)" once the grab holds, or one error line.
 * Exit codes: 0 device closed (EOF) or stdout closed, 2 usage, 3 open failed, 4 EVIOCGRAB failed,
 * 5 read failed (e.g. ENODEV: unplugged), 6 write failed. The grab ends with the process; the
 * helper also dies with its parent (PR_SET_PDEATHSIG), so a crashed bridge never leaves the
 * scanner grabbed by an orphan.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/input.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <unistd.h>

static int write_all(int fd, const char *buf, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, buf, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    buf += n;
    len -= (size_t)n;
  }
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: evgrab /dev/input/eventN\n");
    return 2;
  }
  const char *path = argv[1];
  signal(SIGPIPE, SIG_IGN); /* a closed stdout is EPIPE, handled below */
  pid_t parent = getppid();
  prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (getppid() != parent) return 0; /* the parent died before prctl took effect */

  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    fprintf(stderr, "evgrab: cannot open %s: %s\n", path, strerror(errno));
    return 3;
  }
  if (ioctl(fd, EVIOCGRAB, (void *)1) < 0) {
    fprintf(stderr, "evgrab: EVIOCGRAB on %s failed: %s\n", path, strerror(errno));
    close(fd);
    return 4;
  }
  fprintf(stderr, "evgrab: grabbed %s (%zu-byte events)\n", path, sizeof(struct input_event));
  fflush(stderr);

  char buf[sizeof(struct input_event) * 64];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      fprintf(stderr, "evgrab: read %s failed: %s\n", path, strerror(errno));
      return 5;
    }
    if (n == 0) return 0;
    if (write_all(STDOUT_FILENO, buf, (size_t)n) < 0) {
      if (errno == EPIPE) return 0;
      fprintf(stderr, "evgrab: write failed: %s\n", strerror(errno));
      return 6;
    }
  }
}
