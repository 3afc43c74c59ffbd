/*
 * footfall_cmds.h -- subcommands of the footfall client that live in their own files
 * (net/cmd/footfall_*.c), dispatched by main() in net/cmd/footfall.c.
 *
 * Each takes the arguments from the subcommand's name on (argv[0] = "segments") and
 * returns the process exit status: 0 success, 1 the data is bad (a corrupt or unreadable
 * segment), 2 usage error.
 */
#ifndef FF_NET_CMD_FOOTFALL_CMDS_H
#define FF_NET_CMD_FOOTFALL_CMDS_H

/* `footfall segments ls|dump|verify PATH ...`: offline, through storage/ only. */
int ff_cmd_segments(int argc, char **argv);
/* `footfall archive --data-dir D --older-than DUR --to DIR`: offline, engine/ and
 * storage/ only; safe while footfalld runs. */
int ff_cmd_archive(int argc, char **argv);

#endif /* FF_NET_CMD_FOOTFALL_CMDS_H */
