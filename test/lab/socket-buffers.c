// SPDX-License-Identifier: MIT
/*
 * socket-buffers PID BYTES: sets SO_RCVBUF and SO_SNDBUF (the FORCE variants, past rmem_max) of every
 * UDP socket of process PID to BYTES, as given to setsockopt (the kernel doubles it). Written by hand
 * because nothing packaged does it: the lab uses it to give Debian's wireguard-go (0.0.20220316,
 * which keeps the 208 KiB default) the 7 MiB buffers wireguard-go sets itself since 2023. pidfd_getfd
 * duplicates the process's socket; an option set on the duplicate is set on the socket itself.
 * Prints the number of sockets changed; exits 1 when there was none.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: %s PID BYTES\n", argv[0]);
		return 2;
	}
	int pid = atoi(argv[1]);
	int bytes = atoi(argv[2]);
	int pidfd = syscall(SYS_pidfd_open, pid, 0);
	if (pidfd < 0) {
		perror("pidfd_open");
		return 1;
	}
	char path[64];
	snprintf(path, sizeof(path), "/proc/%d/fd", pid);
	DIR *dir = opendir(path);
	if (!dir) {
		perror(path);
		return 1;
	}
	int changed = 0;
	struct dirent *entry;
	while ((entry = readdir(dir))) {
		if (entry->d_name[0] == '.')
			continue;
		int fd = syscall(SYS_pidfd_getfd, pidfd, atoi(entry->d_name), 0);
		if (fd < 0)
			continue;
		int type = 0, domain = 0;
		socklen_t len = sizeof(int);
		if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_DGRAM &&
		    getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) == 0 &&
		    (domain == AF_INET || domain == AF_INET6)) {
			if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof(bytes)) ||
			    setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &bytes, sizeof(bytes))) {
				perror("setsockopt");
				return 1;
			}
			changed++;
		}
		close(fd);
	}
	closedir(dir);
	printf("%d\n", changed);
	return changed > 0 ? 0 : 1;
}
