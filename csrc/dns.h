/*
** dns.h: name resolution on libuv's thread pool, for the socket files
** (tcp.c, udp.c, ...) and for socket.dns.
**
** Nothing here blocks the loop: a lookup blocks only the calling tasklet,
** or, in the main chunk, drives the loop until it is done. Numeric hosts
** (what inet_pton accepts) with a numeric or absent service are resolved
** at once, without the pool and without blocking.
*/
#ifndef TSK_DNS_H
#define TSK_DNS_H

#include <netdb.h>

#include "core.h"

/* Registry name of the metatable of the result boxes. */
#define TSK_ADDRINFO_MT "tasksock.addrinfo"

/*
** Resolve host/serv (either may be NULL, not both) with hints (may be
** NULL) and continue with k(L, status, ctx).
** In k: on success t->wresult == 0 (t = tsk_self(S)) and a userdata
** holding the `struct addrinfo *` list is on top of the stack (freed by
** its __gc; read it with tsk_addrinfo_get(L, -1)); on failure
** t->wresult is a negative uv error code (UV_EAI_NONAME, ...; turn it into
** LuaSocket's words with tsk_gai_strerror) and nothing was pushed.
** Raises, before starting anything, when L cannot block here and the
** lookup needs the pool. Killing the waiting tasklet is safe: the request
** and its result are freed when the pool is done with them.
** The stack below the top is kept as it was when tsk_getaddrinfo was
** called (as for any continuation).
*/
int tsk_getaddrinfo(lua_State *L, const char *host, const char *serv,
                    const struct addrinfo *hints, lua_KContext ctx,
                    lua_KFunction k);

/* The list held by the box at idx (raises if idx is not a box); NULL once
** the box was emptied by tsk_addrinfo_free. */
struct addrinfo *tsk_addrinfo_get(lua_State *L, int idx);

/* Free the list held by the box at idx now rather than at its __gc. */
void tsk_addrinfo_free(lua_State *L, int idx);

/*
** LuaSocket's words for a getaddrinfo failure given as a uv error code:
** "host or service not provided, or not known" (UV_EAI_NONAME),
** "temporary failure in name resolution", ... (its socket_gaistrerror).
** Codes that are not UV_EAI_* are errno codes: strerror's text.
** Note: LuaSocket says "host not found" only in toip/tohostname, which use
** gethostbyname; a failed connect/bind/getaddrinfo says the words above.
*/
const char *tsk_gai_strerror(int uvcode);

/* Add the table "dns" (socket.dns's functions) to the table on top. */
void tsk_dns_open(lua_State *L);

#endif
