#!/usr/bin/perl

# Tests for a huge burst of pipelined commands before login: POP3 NOOPs
# (also split into odd-sized writes), IMAP NOOPs, SMTP NOOPs ended by a
# bare LF, and SMTP MAIL/RSET pairs with smtp_auth none. Our module answers
# every command in order and then the final QUIT/LOGOUT; stock nginx answers
# what its first buffer holds, then refuses the batch as a too long command
# and closes. Either way the worker survives (same pid, a new session is
# served, no alert); with our module its stack stays small (each reply once
# re-entered the read handler, so the stack grew with the burst).

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
sub valgrind_wrapper {
	open my $fh, '<', $Test::Nginx::NGINX or return 0;
	read $fh, my $head, 4096;
	return ($head // '') =~ /^#!.*valgrind/s;
}
my $valgrind = valgrind_wrapper();
my $n = $valgrind ? 20_000 : 300_000;

my $t = Test::Nginx->new()->has(qw/mail pop3 imap smtp http rewrite/)
	->write_file_expand('nginx.conf', <<'EOF');

%%TEST_GLOBALS%%

daemon off;

events {
}

mail {
    # a debug line or more per command would make a log of hundreds of MB
    error_log    %%TESTDIR%%/error.log info;

    auth_http    http://127.0.0.1:8080/mail/auth;
    server_name  mx.test;

    server {
        listen     127.0.0.1:8110;
        protocol   pop3;
    }

    server {
        listen     127.0.0.1:8143;
        protocol   imap;
        # ends stock's stalled session (see below)
        timeout    5s;
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
            add_header Auth-Status "not here";
            return 204;
        }
    }
}

EOF

$t->run()->plan(16);

###############################################################################

# The worker processes: children of the master named in nginx.pid.
sub workers {
	my $master = $t->read_file('nginx.pid');
	chomp $master;
	my @pids;
	for my $stat (glob '/proc/[0-9]*/stat') {
		open my $fh, '<', $stat or next;
		my ($pid, $rest) = (<$fh> // '') =~ /^(\d+) \(.*\) (.*)$/s or next;
		push @pids, $pid if (split ' ', $rest)[1] eq $master;
	}
	return join ' ', sort { $a <=> $b } @pids;
}

# One reply, all its lines (up to one that is not "250-..."), or undef.
sub reply {
	my ($s) = @_;
	my ($all, $line) = ('', '');
	while (IO::Select->new($s)->can_read(10)) {
		$s->sysread(my $c, 1) or last;
		$line .= $c;
		next unless $c eq "\n";
		$all .= $line;
		return $all unless $line =~ /^\d\d\d-/;
		$line = '';
	}
	return undef;
}

# A new session still works: the greeting, then $cmd gets a reply like $re.
sub serves {
	my ($port, $cmd, $re) = @_;
	my $s = IO::Socket::INET->new(Proto => 'tcp',
		PeerAddr => '127.0.0.1:' . port($port)) or return 0;
	reply($s) // return 0;
	$s->syswrite($cmd);
	return (reply($s) // '') =~ $re;
}

# Connects, reads the greeting, sends $pre and reads its reply, then writes
# $data from a child process in $chunk-byte writes (with a pause after each
# one when $pause) while this process reads the replies: both at once, or
# each would block on the other's full socket buffer. Returns how many lines
# in a row (up to $max) were the lines of @cycle, repeated, and all the text
# received after them until the close (or "(timed out)").
sub burst {
	my ($port, $pre, $data, $chunk, $pause, $max, @cycle) = @_;
	my $s = IO::Socket::INET->new(Proto => 'tcp',
		PeerAddr => '127.0.0.1:' . port($port)) or die "connect: $!";
	reply($s);
	if (defined $pre) {
		$s->syswrite($pre);
		reply($s);
	}

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

	my ($matched, $rest, $buf) = (0, '', '');
	my $sel = IO::Select->new($s);
	while (1) {
		unless ($sel->can_read(20)) {
			$rest .= $buf . '(timed out)';
			last;
		}
		# 0 at the close; undef on a reset (stock closes with unread input)
		my $got = $s->sysread($buf, 65536, length $buf);
		pos($buf) = 0;
		while ($rest eq '' && $buf =~ /\G([^\n]*\n)/gc) {
			if ($matched < $max && $1 eq $cycle[$matched % @cycle]) {
				$matched++;
			} else {
				$rest = $1;
			}
		}
		$buf = substr($buf, pos($buf) // 0);
		if ($rest ne '' || !$got) {
			$rest = substr($rest . $buf, 0, 1000);
			$buf = '';
		}
		next if $got;
		$rest .= '(reset)' unless defined $got;
		last;
	}
	close $s;
	kill 'TERM', $pid;
	waitpid($pid, 0);
	return ($matched, $rest);
}

# Stock answers the commands its buffer holds (128 bytes in pop3, 4k in
# smtp), then sends its refusal and closes with input unread: the reset
# that follows usually loses the replies still held back by Nagle, so only
# a prefix arrives, maybe without the refusal, which the log line shows.
# In imap the 4k buffer holds exactly 512 "a NOOP" commands: stock then
# waits for a read event that never comes (its socket buffer is full, the
# sender blocked) and the session ends at its timeout.

my @cases = (
	# name, port, command before the burst, burst, write size, pause,
	# the replies, what ends the session in ours, stock's refusal, its log
	['pop3 noop', 8110, undef, "NOOP\r\n" x $n . "QUIT\r\n", 65536, 0,
		["+OK\r\n"], "+OK\r\n",
		"-ERR invalid command\r\n", qr/client sent too long command/],
	['pop3 noop in odd writes', 8110, undef, "NOOP\r\n" x $n . "QUIT\r\n",
		997, 1, ["+OK\r\n"], "+OK\r\n",
		"-ERR invalid command\r\n", qr/client sent too long command/],
	['imap noop', 8143, undef, "a NOOP\r\n" x $n . "a LOGOUT\r\n", 65536, 0,
		["a OK completed\r\n"], "* BYE\r\na OK completed\r\n",
		'', qr/client timed out/],
	['smtp noop with bare lf', 8025, "EHLO example.com\r\n",
		"NOOP\n" x $n . "QUIT\r\n", 65536, 0,
		["250 2.0.0 OK\r\n"], "221 2.0.0 Bye\r\n",
		"500 5.5.1 Invalid command\r\n", qr/client sent too long command/],
	['smtp mail and rset', 8026, "EHLO example.com\r\n",
		"MAIL FROM:<a\@example.com>\r\nRSET\r\n" x ($n / 2) . "QUIT\r\n",
		65536, 0, ["250 2.0.0 OK\r\n", "250 2.0.0 OK\r\n"],
		"221 2.0.0 Bye\r\n",
		"500 5.5.1 Invalid command\r\n", qr/client sent too long command/],
);

my %fresh = (
	8110 => ["NOOP\r\n", qr/^\+OK\r\n$/],
	8143 => ["a NOOP\r\n", qr/^a OK completed\r\n$/],
	8025 => ["NOOP\r\n", qr/^250 2\.0\.0 OK\r\n$/],
	8026 => ["NOOP\r\n", qr/^250 2\.0\.0 OK\r\n$/],
);

my $worker = workers();

for my $case (@cases) {
	my ($name, $port, $pre, $data, $chunk, $pause, $cycle, $ours, $refusal,
		$log_re) = @$case;
	my $mark = $stock ? length $t->read_file('error.log') : 0;
	my ($matched, $rest) = burst($port, $pre, $data, $chunk, $pause, $n,
		@$cycle);
	my $want = $stock ? "under $n replies, then at most $refusal"
		: "$n replies, then $ours";
	my $got = "$matched replies, then $rest";
	s/\r\n/\\r\\n/g for $want, $got;
	if ($stock) {
		my $log = substr($t->read_file('error.log'), $mark);
		ok($matched < $n && $rest =~ /^(\Q$refusal\E)?(\(reset\))?$/
			&& $log =~ $log_re, "$name: stock gives up")
			or diag("want $want and $log_re in the log; got $got");
	} else {
		ok($matched == $n && $rest eq $ours, "$name: every reply, in order")
			or diag("want $want; got $got");
	}
	note("$name: $got");
	is(workers(), $worker, "$name: same worker");
	ok(serves($port, @{$fresh{$port}}), "$name: a new session is served");
}

# VmStk only grows: it shows the deepest stack of all the bursts
SKIP: {
skip 'hardening beyond stock', 1 if $stock;
my ($pid) = split ' ', $worker;
open my $fh, '<', "/proc/$pid/cmdline";
skip 'under valgrind', 1 if $valgrind || (<$fh> // '') =~ /valgrind/;
open $fh, '<', "/proc/$pid/status" or skip 'no /proc', 1;
my ($stk) = join('', <$fh>) =~ /^VmStk:\s*(\d+) kB/m;
ok(defined $stk && $stk < 1024, 'worker stack stays small')
	or diag('VmStk: ' . ($stk // 'unknown') . ' kB');
note('VmStk: ' . ($stk // 'unknown') . ' kB');
}

# a crashed worker also shows in the harness's final check: the master
# logs "exited on signal" as an alert
undef $t;

###############################################################################
