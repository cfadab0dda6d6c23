/* fileio.h - whole files: the atomic writer and the one read-whole-file.
 *
 * Every file icl writes appears whole or not at all: the bytes go to a
 * temporary file beside the target ("PATH.tmp.XXXXXX", mkstemp), which is
 * fsync'ed and renamed over PATH only when everything was written; the
 * folder is then fsync'ed (best effort).  A failed or interrupted write
 * leaves an old PATH unchanged and no half-written one (doc/DESIGN.md,
 * stream 3).  The new file gets the mode of the file it replaces, or
 * 0666 & ~umask for a new file, as fopen(PATH, "w") would give.  When PATH
 * is a symbolic link, the file it points to (through every link, as open()
 * follows them; a dangling link names the file to create) is the one
 * replaced, and the link stays, as with fopen(PATH, "w").
 *
 * Temporary files not yet committed are registered here so that a program
 * can remove them when it exits or dies of a signal: icl_atomic_cleanup
 * (called by lib/cli.c's exit and signal handlers, never by the library).
 *
 * Two interfaces over the same writer: file descriptors (icl_atomic_*,
 * icl_write_file_atomic; the safetensors and checkpoint writers) and stdio
 * streams (icl_out_*; the programs' -o outputs, which may also be "-" for
 * standard output or an existing non-regular file such as /dev/null, written
 * directly since nothing can be renamed over those).
 *
 * Errors: a message naming the path in err (errsz bytes; err may be NULL)
 * and a -1 / NULL return; nothing here prints or exits (allocation aside).
 */
#ifndef ICL_FILEIO_H
#define ICL_FILEIO_H

#include <limits.h>
#include <stddef.h>
#include <stdio.h>

/* Always enough room for the temporary file's name (a symbolic link's
 * target can be longer than the link's name). */
#define ICL_ATOMIC_TMP_MAX (PATH_MAX + 16)

/* Create the temporary file for path (beside the file a symbolic link
 * points to) and return its fd (write-only); its name goes to tmp: tmpsz
 * >= strlen(path) + 16, or ICL_ATOMIC_TMP_MAX through a link.  -1 on error
 * ("path too long" when tmp is too small; "'': an empty file name"; path a
 * folder, or an existing file that is not a regular one, such as /dev/null
 * or a FIFO, which the rename would replace: icl_out_open writes those
 * directly). */
int icl_atomic_open(const char *path, char *tmp, size_t tmpsz, char *err, size_t errsz);
/* fsync and close fd, rename tmp to the file it was made for (path, or the
 * file path links to), fsync the folder.  On failure tmp is removed and -1
 * returned; messages name path. */
int icl_atomic_commit(int fd, const char *tmp, const char *path, char *err, size_t errsz);
/* Close fd (when >= 0) and remove tmp. */
void icl_atomic_abort(int fd, const char *tmp);
/* All three: write n bytes of data to path atomically.  0 ok, -1 on error. */
int icl_write_file_atomic(const char *path, const void *data, size_t n, char *err, size_t errsz);
/* Write all n bytes to fd (retrying short writes and EINTR); 0 ok, -1 with errno set. */
int icl_write_all(int fd, const void *data, size_t n);

/* Remove every registered temporary file not yet committed or aborted.
 * Async-signal-safe (only unlink): for exit and signal handlers. */
void icl_atomic_cleanup(void);

/* Open path for writing as above and return a stream: stdout for "-", the
 * file itself for an existing non-regular file, else a temporary file that
 * icl_out_commit renames to path.  NULL on error (a folder, an unwritable
 * place, more than 32 outputs open at once). */
FILE *icl_out_open(const char *path, char *err, size_t errsz);
/* Flush, fsync and close f (from icl_out_open(path)) and rename its
 * temporary file to path; for stdout only flush.  0 ok, -1 on a write,
 * sync, close or rename error (the temporary file is then removed). */
int icl_out_commit(FILE *f, const char *path, char *err, size_t errsz);
/* Close f and remove its temporary file (stdout: nothing). */
void icl_out_abort(FILE *f);

/* Open an input file named on a command line for reading: "-" is stdin;
 * "" (an empty name) and a folder are errors ("'': an empty file name",
 * "PATH: is a folder, not a file"; errno ENOENT / EISDIR), not a file that
 * reads as nothing or fails at its first read.  NULL with "PATH: reason" in
 * err. */
FILE *icl_fopen_in(const char *path, char *err, size_t errsz);

/* Called, when set, each time icl_fopen_in or icl_read_file is about to
 * read standard input ("-"), before the first read.  The library prints
 * nothing: a program sets it (icl_init, lib/cli.c) to say on stderr that it
 * waits for a terminal's input. */
extern void (*icl_on_stdin)(void);

/* Read a whole file into memory: returns a malloc'd buffer of *len bytes
 * plus a terminating NUL (caller frees), or NULL on error with errno set
 * (EFBIG when the file is larger than max bytes; max 0 = no limit) and the
 * message "PATH: reason" in err.  "-" reads standard input.  The cap makes
 * /dev/zero or a runaway FIFO an error instead of an unbounded allocation,
 * and a regular file larger than the cap (a sparse one) an error before
 * any read;
 * a FIFO nobody writes to never blocks: it is an error ("not a regular
 * file"), as is a folder (EISDIR). */
char *icl_read_file(const char *path, size_t max, size_t *len, char *err, size_t errsz);

/* 1 when paths a and b name the same existing regular file (st_dev and
 * st_ino equal, symbolic links followed): writing b would destroy input a.
 * "-" and paths that do not exist (yet) are never the same; devices such
 * as /dev/null may be shared. */
int icl_same_file(const char *a, const char *b);

/* dir + "/" + file as a new string (free() it): trailing slashes of dir
 * are dropped, so "run/" and "run" both give "run/file" (never "run//file");
 * "/" gives "/file" and "" gives "file".  Aborts on out-of-memory as
 * icl_xmalloc does. */
char *icl_path_join(const char *dir, const char *file);

/* path made absolute as Python's os.path.abspath does: a relative path is
 * joined to the current folder (getcwd), then "." segments, repeated and
 * trailing slashes are dropped and "x/.." removed lexically (symbolic
 * links are not resolved: "run/../base" is "base" even if run is a link).
 * A new string (free() it), or NULL with err when the current folder cannot
 * be read (getcwd: removed, too long). */
char *icl_path_abs(const char *path, char *err, size_t errsz);

/* mkdir -p: dir and every missing parent, mode 0755 before the umask.
 * Returns 0 (also when dir exists), or -1 with errno set. */
int icl_mkdirs(const char *dir);

/* An output folder named on a command line (icl-train -o, icl-convert's
 * DIR): dir is created when missing, as mkdir(1) without -p does, in a
 * folder that must exist, so that a mistyped path is an error rather than
 * a new tree of folders (the same rule as an output file's folder,
 * icl_out_open).  Returns 1 when dir was created (mode 0777 before the
 * umask), 0 when it is an existing folder (or a link to one), -1 with err:
 * "DIR: no folder PARENT to create it in", "DIR: PARENT is not a folder",
 * "DIR: exists and is not a folder", "DIR: a link to TARGET, which does not
 * exist" or "DIR: cannot create: REASON". */
int icl_out_dir_make(const char *dir, char *err, size_t errsz);

/* The check of icl_out_dir_make without creating anything: 0 when dir is
 * a folder or could be created (its parent is a folder), -1 with the same
 * messages. */
int icl_out_dir_check(const char *dir, char *err, size_t errsz);

/* A folder written all or nothing (icl-convert's output folder).
 * icl_stage_dir: create a temporary sibling of dir to write the files into
 * ("DIR.tmp.XXXXXX" beside dir, or beside the folder dir links to; dir's
 * parent must exist, as icl_out_dir_check says) and return its name (free()
 * it), or NULL with err ("DIR: ..."; dir existing as something other than a
 * folder is an error).  icl_stage_commit(tmp, dir, owned): move it into place.  When
 * dir does not exist or is an empty folder, one rename makes it dir.  Else
 * (a folder holding earlier files) the files of tmp replace dir's one by
 * one, each name in owned (NULL-terminated: the files a writer of such a
 * folder may write) that tmp does not have is removed from dir so that no
 * stale file is mixed with the new ones, other files of dir are kept, and
 * config.json is removed first and moved in last, so a reader never sees a
 * folder with config.json and a mixture.  tmp is removed.  0 ok, -1 with
 * err.  icl_stage_abort: remove tmp and the files in it.  A run killed
 * between the two leaves dir as it was and a DIR.tmp.XXXXXX folder. */
char *icl_stage_dir(const char *dir, char *err, size_t errsz);
int icl_stage_commit(const char *tmp, const char *dir, const char *const *owned, char *err, size_t errsz);
void icl_stage_abort(const char *tmp);

/* Map the regular file path read-only (PROT_READ, MAP_PRIVATE): *map (NULL
 * for an empty file) and *len bytes; release with icl_unmap_file.  A folder,
 * FIFO or device is an error without blocking ("PATH: not a regular file").
 * Returns 0, or -1 with "PATH: reason" in err. */
int icl_map_file(const char *path, void **map, size_t *len, char *err, size_t errsz);
void icl_unmap_file(void *map, size_t len);

#endif
