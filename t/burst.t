#!/usr/bin/perl

# Tests for a huge burst of pipelined commands before login: POP3 NOOPs
# (also in odd-sized writes that cut commands), IMAP NOOPs, SMTP NOOPs ended
# by a bare LF, SMTP MAIL/RSET pairs with smtp_auth none. Our module answers
# every command in order, then the final QUIT/LOGOUT, and closes; stock
# nginx gives up (see below). Either way the worker survives: same pid, a
# new session is served, no alert. With our module its stack stays small
# (each reply once re-entered the read handler: the stack grew with the
# burst until the worker crashed).

###############################################################################

use warnings;
use strict;

use Test::More;

use IO::Select;
use IO::Socket::INET;
use POSIX qw//;
use Socket qw/ IPPROTO_TCP TCP_NODELAY /;

BEGIN { use FindBin; chdir($FindBin::Bin); }

use lib 'lib';
use Test::Nginx;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

local $SIG{PIPE} = 'IGNORE';

# stock nginx refuses the batch: its shape is checked instead
my $stock = ($ENV{TEST_NGINX_GLOBALS} // '') !~ /ngx_mail_rs/;

# scripts/memcheck.sh runs nginx from a wrapper script under valgrind:
# a shorter burst there, and no stack size check
my $valgrind = do {
	my ($fh, $head);
	open($fh, '<', $Test::Nginx::NGINX) && read($fh, $head, 4096)
		&& $head =~ /^#!.*valgrind/s;
};
my $n = $valgrind ? 20_000 : 300_000;

my $t = Test::Nginx->new()->has(qw/mail pop3 imap smtp http rewrite/);

my $conf = <<'EOF';

%%TEST_GLOBALS%%

daemon off;

events {
}

mail {
    # a debug line or more per command would make a log of hundreds of MB
    error_log    %%TESTDIR%%/error.log info;

    %%MAX_COMMANDS%%

    auth_http    http://127.0.0.1:8080/mail/auth;

    server {
        listen     127.0.0.1:8110;
        protocol   pop3;
    }

    server {
        listen     127.0.0.1:8143;
        protocol   imap;
        # ends stock's stalled session (see below); ours gets longer, so a
        # loaded machine's slow reader is not taken for a stalled client
        timeout    %%IMAP_TIMEOUT%%;
    }

    server {
        listen     127.0.0.1:8025;
        protocol   smtp;
    }

    server {
        listen     127.0.0.1:8026;
        protocol   smtp;
        smtp_auth  none;
    }
}

http {
    %%TEST_GLOBALS_HTTP%%

    server {
        listen       127.0.0.1:8080;
        server_name  localhost;

        # never asked: nobody logs in
        location = /mail/auth {
            return 204;
        }
    }
}

EOF

# our module has freenginx's max_commands, 1000 by default, which would end
# the burst; stock has no such directive
$conf =~ s/%%MAX_COMMANDS%%/$stock ? '' : 'max_commands 100000000;'/e;
$conf =~ s/%%IMAP_TIMEOUT%%/$stock ? '5s' : '60s'/e;
$t->write_file_expand('nginx.conf', $conf);

$t->run()->plan(16);

###############################################################################

# The text of /proc/$pid/$file, or ''.
sub proc {
	my ($pid, $file) = @_;
	open my $fh, '<', "/proc/$pid/$file" or return '';
	local $/;
	return <$fh> // '';
}

# The worker processes: the children of the master named in nginx.pid.
sub workers {
	my $master = $t->read_file('nginx.pid') =~ s/\s+//gr;
	return join ' ', sort { $a <=> $b }
		grep { proc($_, 'stat') =~ /.*\) \S+ \Q$master\E /s }
		map { m!(\d+)$! } glob '/proc/[0-9]*';
}

# One reply, all its lines (up to one that is not "250-..."), or undef.
sub reply {
	my ($s) = @_;
	my $all = '';
	while (IO::Select->new($s)->can_read(10) && $s->sysread(my $c, 1)) {
		$all .= $c;
		return $all if $all =~ /(^|\n)(?!\d\d\d-)[^\n]*\n\z/;
	}
	return undef;
}

# A new session: the reply to $cmd after the greeting.
sub serves {
	my ($port, $cmd) = @_;
	my $s = IO::Socket::INET->new(Proto => 'tcp',
		PeerAddr => '127.0.0.1:' . port($port)) or return "connect: $!";
	reply($s) // return 'no greeting';
	$s->syswrite($cmd);
	return reply($s);
}

# Connects, reads the greeting, sends $pre and reads its reply, then writes
# $data from a child process in $chunk-byte writes (with a pause after each
# one when $pause) while this process reads the replies: both at once, or
# each would block on the other's full socket buffer. Returns how many lines
# in a row (up to $max) were the lines of @cycle, repeated, and all the text
# received after them until the close ("(reset)" if reset, "(timed out)"
# if nothing came for 20s).
sub burst {
	my ($port, $pre, $data, $chunk, $pause, $max, @cycle) = @_;
	my $s = IO::Socket::INET->new(Proto => 'tcp',
		PeerAddr => '127.0.0.1:' . port($port)) or die "connect: $!";
	reply($s);
	reply($s) if defined $pre && $s->syswrite($pre);

	my $pid = fork() // die "fork: $!";
	if ($pid == 0) {
		setsockopt($s, IPPROTO_TCP, TCP_NODELAY, 1) if $pause;
		for (my $off = 0; $off < length $data; ) {
			# stock closes before the end: stop there
			my $w = $s->syswrite($data, $chunk, $off) or POSIX::_exit(0);
			$off += $w;
			select undef, undef, undef, 0.001 if $pause;
		}
		POSIX::_exit(0);
	}

	my ($matched, $rest, $buf, $got) = (0, '', '');
	do {
		# 0 at the close, undef on a reset (stock closes with input unread)
		$got = IO::Select->new($s)->can_read(20)
			? $s->sysread($buf, 65536, length $buf) : -1;
		pos($buf) = 0;
		while ($rest eq '' && $buf =~ /\G([^\n]*\n)/gc) {
			if ($matched < $max && $1 eq $cycle[$matched % @cycle]) {
				$matched++;
			} else {
				$rest = $1;
			}
		}
		$buf = substr($buf, pos($buf) // 0);
		# from the first other line on, or at the end, keep it all
		($rest, $buf) = (substr($rest . $buf, 0, 1000), '')
			if $rest ne '' || !$got || $got < 0;
	} while ($got && $got > 0);
	$rest .= '(reset)' unless defined $got;
	$rest .= '(timed out)' if $got && $got < 0;
	close $s;
	kill 'TERM', $pid;
	waitpid($pid, 0);
	return ($matched, $rest);
}

# Stock answers the commands its buffer holds (128 bytes in pop3, 4k in
# smtp), then refuses the rest as a too long command and closes with input
# unread: the reset that follows loses what Nagle still held back, so only a
# prefix of the replies arrives, the refusal rarely, its log line always.
# In imap the 4k buffer holds exactly 512 "a NOOP": after a few rounds stock
# waits for a read event that never comes (its socket buffer is full, so no
# new data arrives) until its timeout ends the session.

my %server = (
	# a command for a new session and its reply; how our module ends the
	# session; stock's refusal and its log line
	8110 => ["NOOP\r\n", "+OK\r\n", "+OK\r\n", "-ERR invalid command\r\n",
		qr/client sent too long command/],
	8143 => ["a NOOP\r\n", "a OK completed\r\n", "* BYE\r\na OK completed\r\n",
		'', qr/client timed out/],
	8025 => ["NOOP\r\n", "250 2.0.0 OK\r\n", "221 2.0.0 Bye\r\n",
		"500 5.5.1 Invalid command\r\n", qr/client sent too long command/],
);
$server{8026} = $server{8025};

my $ehlo = "EHLO example.com\r\n";
my @cases = (
	# name, port, command before the burst, burst, write size, pause,
	# the replies to the burst
	['pop3 noop', 8110, undef, "NOOP\r\n" x $n . "QUIT\r\n", 65536, 0, "+OK\r\n"],
	['pop3 noop in odd writes', 8110, undef, "NOOP\r\n" x $n . "QUIT\r\n",
		997, 1, "+OK\r\n"],
	['imap noop', 8143, undef, "a NOOP\r\n" x $n . "a LOGOUT\r\n", 65536, 0,
		"a OK completed\r\n"],
	['smtp noop with bare lf', 8025, $ehlo, "NOOP\n" x $n . "QUIT\r\n",
		65536, 0, "250 2.0.0 OK\r\n"],
	# a MAIL not reset would get "503 5.5.1 Error: nested MAIL command"
	['smtp mail and rset', 8026, $ehlo,
		"MAIL FROM:<a\@example.com>\r\nRSET\r\n" x ($n / 2) . "QUIT\r\n",
		65536, 0, "250 2.0.0 OK\r\n", "250 2.0.0 OK\r\n"],
);

# the master writes nginx.pid before it starts its worker
my $worker = '';
for (1 .. 300) {
	last if ($worker = workers()) ne '';
	select undef, undef, undef, 0.1;
}

for my $case (@cases) {
	my ($name, $port, $pre, $data, $chunk, $pause, @cycle) = @$case;
	my ($cmd, $ok, $end, $refusal, $log_re) = @{$server{$port}};
	my $mark = length $t->read_file('error.log');
	my ($matched, $rest) = burst($port, $pre, $data, $chunk, $pause, $n,
		@cycle);
	my $want = !$stock ? "$n replies, then $end" : "under $n replies, then "
		. ($refusal eq '' ? 'nothing' : "at most $refusal");
	my $got = "$matched replies, then $rest";
	s/\r\n/\\r\\n/g for $want, $got;
	if ($stock) {
		my $log = substr($t->read_file('error.log'), $mark);
		ok($matched < $n && $rest =~ /^(\Q$refusal\E)?(\(reset\))?$/
			&& $log =~ $log_re, "$name: stock gives up")
			or diag("want $want and $log_re in the log; got $got");
	} else {
		ok($matched == $n && $rest eq $end, "$name: every reply, in order")
			or diag("want $want; got $got");
	}
	note("$name: $got");
	is(workers(), $worker || 'a worker', "$name: same worker");
	is(serves($port, $cmd), $ok, "$name: a new session is served");
}

# VmStk only grows: it shows the deepest stack of all the bursts
SKIP: {
skip 'hardening beyond stock', 1 if $stock;
my ($pid) = split ' ', $worker;
skip 'under valgrind', 1 if $valgrind || proc($pid, 'cmdline') =~ /valgrind/;
my ($stk) = proc($pid, 'status') =~ /^VmStk:\s*(\d+) kB/m;
$stk //= 'unknown';
ok($stk =~ /^\d+$/ && $stk < 1024, 'worker stack stays small')
	or diag("VmStk: $stk kB");
note("VmStk: $stk kB");
}

# a crashed worker also shows in the harness's final check: the master
# logs "exited on signal" as an alert
undef $t;

###############################################################################
