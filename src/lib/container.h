/*
 * Container ids from cgroup paths: what docker, containerd, CRI-O, podman and the kubelet
 * name a container's cgroup after. Pure; shared by the proc and BPF sources.
 */
#ifndef VIGIL_CONTAINER_H
#define VIGIL_CONTAINER_H

#include <stdbool.h>
#include <stddef.h>

/* Length of a container id: 64 lowercase hex digits. */
#define CONTAINER_ID_LEN 64

/*
 * Finds the container id in cgroup path @path (@len bytes, need not be NUL-terminated).
 * Recognised components: docker-ID.scope, cri-containerd-ID.scope, crio-ID.scope,
 * libpod-ID.scope, and a bare ID (/docker/ID, /kubepods/.../podUID/ID, /libpod_parent/...).
 * Monitor scopes such as crio-conmon-ID.scope are not the container and do not match.
 * With nested containers the innermost (last) id wins. Returns true and writes the
 * NUL-terminated id to @out, or returns false and leaves @out untouched.
 */
bool container_id_from_cgroup(const char *path, size_t len, char out[CONTAINER_ID_LEN + 1]);

#endif
