#!/usr/bin/perl

# Tests for a worker short of descriptors while bulk data moves: four POP3
# sessions fetch 1 MiB each at the same time in a worker whose
# worker_rlimit_nofile leaves room for their sockets and one pipe pair
# only. This module wants a splice pipe for each (a relay buffer filled);
# pipe2() fails with EMFILE for the others, which stay on their buffers.
# Every message arrives byte-exact, nothing is refused, alerted or logged
# as critical, the worker holds no pipe and nothing leaked afterwards, and
# a later session in the same worker gets a pipe again. Stock nginx relays
# through its buffers only and passes the same checks with no pipe at all.

###############################################################################

use warnings;
use strict;

use Test::More;

use Digest::MD5 qw/ md5_hex /;
use IO::Select;
use IO::Socket::INET;
use Socket qw/ CRLF SOL_SOCKET SO_RCVBUF /;
use Time::HiRes qw/ time /;

BEGIN { use FindBin; chdir($FindBin::Bin); }

use lib 'lib';
use Test::Nginx;
use Test::Nginx::POP3;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

local $SIG{PIPE} = 'IGNORE';

# stock nginx relays through its buffers only: it never holds a pipe
my $stock = ($ENV{TEST_NGINX_GLOBALS} // '') !~ /ngx_mail_rs/;
my $pipe = $stock ? 0 : 2;

my ($mib, $n) = (1024 * 1024, 4);

# sndbuf: the worker's sockets towards clients take little, so a client
# that does not read stalls its transfer inside the worker (pipe or buffer)
my $conf = <<'EOF';
%%TEST_GLOBALS%%
%%RLIMIT%%
daemon off;
events {
}
mail {
    auth_http  127.0.0.1:8081/auth;
    proxy_timeout 30s;
    server {
        listen     127.0.0.1:8110 sndbuf=64k;
        protocol   pop3;
    }
}
EOF

my $t = Test::Nginx->new()->has(qw/mail pop3/);
port($_) for 8081, 8111;
$t->run_daemon(\&auth_daemon);
$t->run_daemon(\&backend);
$t->waitforsocket('127.0.0.1:' . port($_)) for 8081, 8111;

# A first run without a limit finds what a worker holds at rest once it
# has served a session: stdin/out/err, the error log, the listening
# socket, the master's channel, epoll, and whatever the test's caller let
# it inherit. The kernel hands out the lowest free number and refuses one
# at or above the limit, and inherited descriptors may sit at any number,
# so N is where the numbers free below it reach 2 per session (client and
# backend socket) + 3: room for one pipe pair and one spare. Logging a
# session in takes a third socket for a moment (the auth request), which
# the spare covers; a second pipe pair never fits, so with four transfers
# under way three pipe2() calls meet EMFILE, even with one number free.

$t->write_file_expand('nginx.conf', $conf =~ s/%%RLIMIT%%//r)->run();
plan(skip_all => 'no /proc') unless -d '/proc/self/fd';

# valgrind (scripts/memcheck.sh) keeps descriptors of its own near the
# limit and refuses a lower worker_rlimit_nofile
my $binary = $ENV{TEST_NGINX_BINARY} // '';
plan(skip_all => 'nginx runs under valgrind')
	if -T $binary && do { local (@ARGV, $/) = $binary; <> =~ /valgrind/ };
my $limit = free_below(2 * $n + 3, served_worker());
$t->stop();
unlink $t->testdir() . '/nginx.pid';

$t->write_file_expand('nginx.conf',
	$conf =~ s/%%RLIMIT%%/worker_rlimit_nofile $limit;/r)->run()->plan(12);

my $worker = served_worker();
my %rest = fds($worker);
my $rest = keys %rest;
my $rest_pipes = grep { /^pipe:/ } values %rest;
note("worker at rest: $rest descriptors ($rest_pipes inherited pipe ends); "
	. "worker_rlimit_nofile $limit");
my ($rlimit) = `cat /proc/$worker/limits` =~ /^Max open files\s+(\d+)/m;
is(($rlimit // '') . ' ' . free_below(2 * $n + 3, $worker), "$limit $limit",
	"worker limit $limit, room for the sessions and one pipe pair");

# four sessions in, each asks for its megabyte and does not read yet

my @s = map { login("u$_") } 1 .. $n;
is(scalar(grep { $_->{ok} } @s), $n, 'every session logged in');

retr(@s);
fds_are($rest + 2 * $n + $pipe, 'four stalled transfers: sockets, one pipe pair');

# now all four read at once; the pipe may pass from session to session

my ($ok, $max_fds, $max_pipes) = read_all(@s);
note("during the transfers: at most $max_fds descriptors, "
	. "$max_pipes of them the module's pipe ends");
is($ok, $n, 'every message byte-exact');
is($max_pipes, $pipe, 'never more than the one pipe pair');
fds_are($rest + 2 * $n, 'done: no pipe kept, none leaked');

$ok = grep { $_->send('NOOP'); ($_->read() // '') eq '+OK NOOP' . CRLF } @s;
is($ok, $n, 'commands after the transfers');

$_->send('QUIT'), $_->read() for @s;
undef @s;
fds_are($rest, 'sessions closed: back to the start');

# descriptors are free again: a new session splices (module) and works

my $s = login('u5');
retr($s);
fds_are($rest + 2 + $pipe, 'a new stalled transfer gets a pipe');
is((read_all($s))[0], 1, 'and its message byte-exact');
$s->send('QUIT'), $s->read(), undef $s;

is(worker_pid(), $worker, 'the same worker');

# an accept() or socket() that met the limit would log [crit] or [alert]
my @bad = $t->read_file('error.log') =~ /^.*(?:\[crit\]|Too many open).*$/gm;
is(join("\n", @bad), '', 'no crit, no descriptor errors in the log');

undef $t;

###############################################################################

# a logged-in session; {ok} says whether the backend's login answer came
sub login {
	my ($user) = @_;
	my $s = Test::Nginx::POP3->new();
	$s->read(), $s->send("USER $user"), $s->read(), $s->send('PASS secret');
	@$s{qw/ user ok /} = ($user, ($s->read() // '') =~ /^\+OK logged in/);
	return $s;
}

# the worker, at rest once it has served a session (all set up)
sub served_worker {
	my $s = login('u0');
	$s->send('QUIT'), $s->read(), undef $s;
	my $pid = worker_pid();
	settled_fds($pid);
	return $pid;
}

# RETR 1m in each session, with a small receive buffer and nothing read
sub retr {
	for my $s (@_) {
		setsockopt($s->socket(), SOL_SOCKET, SO_RCVBUF, 65536);
		$s->send("RETR $mib");
	}
}

# reads the sessions' replies at once, sampling the worker's descriptors;
# how many came byte-exact, the most descriptors and module pipe ends seen
sub read_all {
	my %got = map { $_->socket() => '' } @_;
	my $sel = IO::Select->new(map { $_->socket() } @_);
	my ($max_fds, $max_pipes, $end) = (0, 0, time() + 15);
	while ($sel->count() && time() < $end) {
		for my $sock ($sel->can_read(1)) {
			my $r = sysread($sock, my $buf, 65536);
			$got{$sock} .= $buf if $r;
			$sel->remove($sock) if !$r || $got{$sock} =~ /\r\n\.\r\n\z/;
		}
		my %fds = fds($worker);
		my $p = grep { /^pipe:/ } values %fds;
		$max_fds = keys %fds if keys %fds > $max_fds;
		$max_pipes = $p - $rest_pipes if $p - $rest_pipes > $max_pipes;
	}
	my $ok = grep { md5_hex($got{$_->socket()}) eq md5_hex(reply($_->{user})) } @_;
	return ($ok, $max_fds, $max_pipes);
}

# the master's only child (it has served a session by then)
sub worker_pid {
	my ($master) = $t->read_file('nginx.pid') =~ /(\d+)/;
	open my $fh, '<', "/proc/$master/task/$master/children" or return undef;
	return (split ' ', <$fh> // '')[0];
}

# number => what it is
sub fds {
	my ($pid) = @_;
	opendir(my $dh, "/proc/$pid/fd") or return ();
	return map { $_ => readlink("/proc/$pid/fd/$_") // '?' } grep { /^\d+$/ } readdir $dh;
}

# the lowest limit under which $want numbers are free
sub free_below {
	my ($want, $pid) = @_;
	my %fds = fds($pid);
	my $limit = 0;
	$want -= !exists $fds{$limit++} while $want > 0;
	return $limit;
}

# the count once it has stayed the same for half a second (at most 10 s)
sub settled_fds {
	my ($pid) = @_;
	my ($last, $same) = (-1, 0);
	for (1 .. 100) {
		my $now = keys %{{ fds($pid) }};
		$same = $now == $last ? $same + 1 : 0;
		$last = $now;
		last if $same >= 5;
		select undef, undef, undef, 0.1;
	}
	return $last;
}

sub fds_are {
	my ($want, $name) = @_;
	my $got = settled_fds($worker);
	my %fds = fds($worker);
	is($got, $want, $name)
		or diag(join ' ', map { "$_:$fds{$_}" } sort { $a <=> $b } keys %fds);
}

# The backend's whole reply to RETR for $user: each user's lines differ,
# so bytes that went to the wrong session would show.
sub reply {
	my ($user) = @_;
	my $k = ord(substr $user, -1);
	my $line = join('', map { chr(ord('a') + ($_ * $k) % 26) } 0 .. 69) . CRLF;
	my $body = $line x int($mib / length $line);
	return "+OK $mib octets" . CRLF . $body
		. 'z' x ($mib - length($body) - 2) . CRLF . '.' . CRLF;
}

sub auth_daemon {
	my $server = IO::Socket::INET->new(LocalAddr => '127.0.0.1:' . port(8081),
		Listen => 16, ReuseAddr => 1) or die "auth listen: $!";
	while (my $c = $server->accept()) {
		1 while (<$c> // CRLF) ne CRLF;
		print $c 'HTTP/1.0 200 OK' . CRLF . 'Auth-Status: OK' . CRLF
			. 'Auth-Server: 127.0.0.1' . CRLF
			. 'Auth-Port: ' . port(8111) . CRLF . CRLF;
		close $c;
	}
}

# USER <name>, PASS, RETR (a megabyte made for the user), QUIT; +OK else
sub backend {
	my $server = IO::Socket::INET->new(LocalAddr => '127.0.0.1:' . port(8111),
		Listen => 16, ReuseAddr => 1) or die "backend listen: $!";
	local $SIG{CHLD} = 'IGNORE';
	while (my $c = $server->accept()) {
		if (fork()) { close $c; next; }
		$c->autoflush(1);
		print $c '+OK backend ready' . CRLF;
		my $user = '';
		while (defined(my $l = <$c>)) {
			my ($cmd, $arg) = $l =~ /^(\S*)\s*(.*?)\r?$/;
			$cmd = uc $cmd;
			$user = $arg if $cmd eq 'USER';
			print $c $cmd eq 'PASS' ? '+OK logged in' . CRLF
				: $cmd eq 'RETR' ? reply($user) : "+OK $cmd" . CRLF;
			last if $cmd eq 'QUIT';
		}
		exit 0;
	}
}

###############################################################################
