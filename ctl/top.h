/* tcpctl top: a full-screen live view of tcpd (ncurses). */
#pragma once

/* Runs until q or a signal (client.h's ctl_stop_requested) on the
 * terminal; host as tcpctl -H, or NULL. Returns an exit code. */
int top_run(const char *host);
