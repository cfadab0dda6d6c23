/* outfile.h - output files that appear whole or not at all.
 *
 * A program that writes a named file (-o FILE) writes a temporary file
 * beside it ("FILE.tmp.XXXXXX", mkstemp) and renames it over FILE only when
 * everything was written, flushed and fsync'ed (icl_out_commit).  If the
 * program dies first (die(), exit, or returning from main) the temporary
 * file is removed at exit, so a failed run never leaves a half-written or
 * truncated FILE, and an old FILE survives a failed run unchanged.  This
 * also makes "-o x.jsonl x.jsonl" safe: the input is read before it is
 * replaced.  SIGINT, SIGTERM and SIGHUP (when not otherwise handled) also
 * remove the temporary files before the program dies of the signal; only
 * SIGKILL or a crash can leave one behind, never a half-written FILE.
 * A symbolic link named FILE is replaced by the new file, as with sed -i.
 *
 * "-" means standard output, and a FILE that exists and is not a regular
 * file (/dev/null, /dev/full, a FIFO, /dev/stdout) is written directly:
 * nothing can be renamed over those.  The file gets mode 0666 & ~umask,
 * as fopen(FILE, "w") would give a new file.
 */
#ifndef ICL_OUTFILE_H
#define ICL_OUTFILE_H

#include <stdio.h>

/* Open FILE for writing as above.  Dies ("prog: FILE: reason", exit 1) when
 * the temporary file cannot be created.  At most 16 open at once. */
FILE *icl_out_open(const char *path);

/* Flush, fsync and close f, then rename its temporary file to path (the
 * same path given to icl_out_open).  For stdout it only flushes.  Dies
 * naming path on any write, sync, close or rename error (the temporary
 * file is then removed at exit). */
void icl_out_commit(FILE *f, const char *path);

#endif
