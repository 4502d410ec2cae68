/*
 * libnss_unbit.so.2: the answers the uwsgi.it platform's `unbit` NSS module gives inside a
 * container (shared/platform.md, "Users inside the container"), written from that
 * description. build.rs compiles it and build-distro embeds the result.
 *
 * It must load in old and new glibc trees, so it calls only functions whose symbol
 * versions are old (the test in src/finish/nss.rs fails on anything above GLIBC_2.17).
 * That rules out stat()/fstatat(), versioned GLIBC_2.33 since glibc moved them out of
 * __xstat: the owner test goes through syscall(SYS_newfstatat) instead.
 *
 * No global state: every entry point is re-entrant, as NSS requires.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <netdb.h>
#include <netinet/in.h>
#include <nss.h>
#include <pwd.h>
#include <shadow.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

/* Container uids start here; the hosts rule numbers from the same base. */
#define FIRST_UID 30000UL
#define CONTAINERS "/containers/"
#define SHELL "/bin/bash"
#define LOCAL_SUFFIX ".local"

/* The canonical decimal spelling of an id in s[0..len): digits only, no leading zero,
 * no sign, and below (uid_t)-1, which means "no id". Anything else is not ours. */
static int parse_id(const char *s, size_t len, unsigned long *out) {
    unsigned long v = 0;
    size_t i;
    if (len == 0 || len > 10 || (s[0] == '0' && len > 1))
        return 0;
    for (i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (v >= 0xffffffffUL)
        return 0;
    *out = v;
    return 1;
}

/* Writes the decimal id into buf (at least 11 bytes), returns its length. */
static size_t format_id(unsigned long id, char *buf) {
    char tmp[11];
    size_t n = 0, i;
    do {
        tmp[n++] = (char)('0' + id % 10);
        id /= 10;
    } while (id);
    for (i = 0; i < n; i++)
        buf[i] = tmp[n - 1 - i];
    buf[n] = '\0';
    return n;
}

/* The platform's test for every passwd/group/shadow answer: a container id whose home
 * exists and belongs to uid = gid = id. */
static int is_container(unsigned long id) {
    char path[sizeof(CONTAINERS) + 11];
    struct stat st;
    if (id < FIRST_UID)
        return 0;
    memcpy(path, CONTAINERS, sizeof(CONTAINERS) - 1);
    format_id(id, path + sizeof(CONTAINERS) - 1);
    if (syscall(SYS_newfstatat, AT_FDCWD, path, &st, 0) != 0)
        return 0;
    return st.st_uid == (uid_t)id && st.st_gid == (gid_t)id;
}

/* A bump allocator over the caller's buffer. */
struct arena {
    char *next;
    size_t left;
};

static void *take(struct arena *a, size_t size, size_t align) {
    size_t pad = (size_t)(-(uintptr_t)a->next) & (align - 1);
    void *p;
    if (pad > a->left || size > a->left - pad)
        return NULL;
    p = a->next + pad;
    a->next += pad + size;
    a->left -= pad + size;
    return p;
}

static char *copy(struct arena *a, const char *s) {
    size_t n = strlen(s) + 1;
    char *p = take(a, n, 1);
    if (p)
        memcpy(p, s, n);
    return p;
}

static enum nss_status notfound(int *errnop) {
    *errnop = ENOENT;
    return NSS_STATUS_NOTFOUND;
}

/* The buffer is too small: glibc retries with a bigger one. */
static enum nss_status erange(int *errnop) {
    *errnop = ERANGE;
    return NSS_STATUS_TRYAGAIN;
}

static enum nss_status fill_passwd(unsigned long id, struct passwd *pw, char *buf,
                                   size_t buflen, int *errnop) {
    struct arena a = {buf, buflen};
    char name[11], home[sizeof(CONTAINERS) + 11];
    if (!is_container(id))
        return notfound(errnop);
    format_id(id, name);
    memcpy(home, CONTAINERS, sizeof(CONTAINERS) - 1);
    format_id(id, home + sizeof(CONTAINERS) - 1);
    pw->pw_name = copy(&a, name);
    pw->pw_passwd = copy(&a, "x");
    pw->pw_gecos = copy(&a, name);
    pw->pw_dir = copy(&a, home);
    pw->pw_shell = copy(&a, SHELL);
    if (!pw->pw_name || !pw->pw_passwd || !pw->pw_gecos || !pw->pw_dir || !pw->pw_shell)
        return erange(errnop);
    pw->pw_uid = (uid_t)id;
    pw->pw_gid = (gid_t)id;
    return NSS_STATUS_SUCCESS;
}

EXPORT enum nss_status _nss_unbit_getpwuid_r(uid_t uid, struct passwd *pw, char *buf,
                                             size_t buflen, int *errnop) {
    return fill_passwd(uid, pw, buf, buflen, errnop);
}

EXPORT enum nss_status _nss_unbit_getpwnam_r(const char *name, struct passwd *pw, char *buf,
                                             size_t buflen, int *errnop) {
    unsigned long id;
    if (!parse_id(name, strlen(name), &id))
        return notfound(errnop);
    return fill_passwd(id, pw, buf, buflen, errnop);
}

static enum nss_status fill_group(unsigned long id, struct group *gr, char *buf, size_t buflen,
                                  int *errnop) {
    struct arena a = {buf, buflen};
    char name[11];
    char **members;
    if (!is_container(id))
        return notfound(errnop);
    format_id(id, name);
    members = take(&a, sizeof(char *), sizeof(char *));
    gr->gr_name = copy(&a, name);
    gr->gr_passwd = copy(&a, "x");
    if (!members || !gr->gr_name || !gr->gr_passwd)
        return erange(errnop);
    members[0] = NULL;
    gr->gr_mem = members;
    gr->gr_gid = (gid_t)id;
    return NSS_STATUS_SUCCESS;
}

EXPORT enum nss_status _nss_unbit_getgrgid_r(gid_t gid, struct group *gr, char *buf,
                                             size_t buflen, int *errnop) {
    return fill_group(gid, gr, buf, buflen, errnop);
}

EXPORT enum nss_status _nss_unbit_getgrnam_r(const char *name, struct group *gr, char *buf,
                                             size_t buflen, int *errnop) {
    unsigned long id;
    if (!parse_id(name, strlen(name), &id))
        return notfound(errnop);
    return fill_group(id, gr, buf, buflen, errnop);
}

EXPORT enum nss_status _nss_unbit_getspnam_r(const char *name, struct spwd *sp, char *buf,
                                             size_t buflen, int *errnop) {
    struct arena a = {buf, buflen};
    unsigned long id;
    if (!parse_id(name, strlen(name), &id) || !is_container(id))
        return notfound(errnop);
    sp->sp_namp = copy(&a, name);
    sp->sp_pwdp = copy(&a, "!");
    if (!sp->sp_namp || !sp->sp_pwdp)
        return erange(errnop);
    sp->sp_lstchg = (long)(time(NULL) / 86400) - 1;
    sp->sp_min = -1;
    sp->sp_max = -1;
    sp->sp_warn = -1;
    sp->sp_inact = -1;
    sp->sp_expire = -1;
    sp->sp_flag = (unsigned long)-1;
    return NSS_STATUS_SUCCESS;
}

/* `<N>.local` with N > 30000 -> 10.0.0.0 + (N - 30000 + 2), kept inside 10/8.
 * Returns the address in network byte order, or 0 when the name is not ours. */
static uint32_t local_address(const char *name) {
    size_t len = strlen(name), suffix = sizeof(LOCAL_SUFFIX) - 1;
    unsigned long n;
    if (len <= suffix || memcmp(name + len - suffix, LOCAL_SUFFIX, suffix) != 0)
        return 0;
    if (!parse_id(name, len - suffix, &n) || n <= FIRST_UID)
        return 0;
    return htonl(0x0a000000UL | ((n - FIRST_UID + 2) & 0xffffffUL));
}

static enum nss_status host_notfound(int *errnop, int *h_errnop) {
    *errnop = ENOENT;
    *h_errnop = HOST_NOT_FOUND;
    return NSS_STATUS_NOTFOUND;
}

static enum nss_status host_erange(int *errnop, int *h_errnop) {
    *errnop = ERANGE;
    *h_errnop = NETDB_INTERNAL;
    return NSS_STATUS_TRYAGAIN;
}

EXPORT enum nss_status _nss_unbit_gethostbyname3_r(const char *name, int af,
                                                   struct hostent *host, char *buf,
                                                   size_t buflen, int *errnop, int *h_errnop,
                                                   int32_t *ttlp, char **canonp) {
    struct arena a = {buf, buflen};
    uint32_t addr = local_address(name);
    char **aliases, **addrs, *bytes;
    /* IPv4 only: an AAAA question is left to the next source. */
    if (af != AF_INET || addr == 0)
        return host_notfound(errnop, h_errnop);
    aliases = take(&a, sizeof(char *), sizeof(char *));
    addrs = take(&a, 2 * sizeof(char *), sizeof(char *));
    bytes = take(&a, sizeof(addr), sizeof(addr));
    host->h_name = copy(&a, name);
    if (!aliases || !addrs || !bytes || !host->h_name)
        return host_erange(errnop, h_errnop);
    memcpy(bytes, &addr, sizeof(addr));
    aliases[0] = NULL;
    addrs[0] = bytes;
    addrs[1] = NULL;
    host->h_aliases = aliases;
    host->h_addrtype = AF_INET;
    host->h_length = sizeof(addr);
    host->h_addr_list = addrs;
    if (ttlp)
        *ttlp = 0;
    if (canonp)
        *canonp = host->h_name;
    return NSS_STATUS_SUCCESS;
}

EXPORT enum nss_status _nss_unbit_gethostbyname2_r(const char *name, int af,
                                                   struct hostent *host, char *buf,
                                                   size_t buflen, int *errnop, int *h_errnop) {
    return _nss_unbit_gethostbyname3_r(name, af, host, buf, buflen, errnop, h_errnop, NULL,
                                       NULL);
}

EXPORT enum nss_status _nss_unbit_gethostbyname_r(const char *name, struct hostent *host,
                                                  char *buf, size_t buflen, int *errnop,
                                                  int *h_errnop) {
    return _nss_unbit_gethostbyname3_r(name, AF_INET, host, buf, buflen, errnop, h_errnop,
                                       NULL, NULL);
}

/* getaddrinfo's entry point. glibc may hand over a tuple of its own in *pat; otherwise
 * the tuple lives in the buffer. */
EXPORT enum nss_status _nss_unbit_gethostbyname4_r(const char *name,
                                                   struct gaih_addrtuple **pat, char *buf,
                                                   size_t buflen, int *errnop, int *h_errnop,
                                                   int32_t *ttlp) {
    struct arena a = {buf, buflen};
    uint32_t addr = local_address(name);
    struct gaih_addrtuple *t = *pat;
    char *copied;
    if (addr == 0)
        return host_notfound(errnop, h_errnop);
    if (!t) {
        t = take(&a, sizeof(*t), __alignof__(struct gaih_addrtuple));
        if (!t)
            return host_erange(errnop, h_errnop);
    }
    copied = copy(&a, name);
    if (!copied)
        return host_erange(errnop, h_errnop);
    memset(t, 0, sizeof(*t));
    t->name = copied;
    t->family = AF_INET;
    memcpy(t->addr, &addr, sizeof(addr));
    *pat = t;
    if (ttlp)
        *ttlp = 0;
    return NSS_STATUS_SUCCESS;
}
