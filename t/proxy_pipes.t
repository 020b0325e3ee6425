#!/usr/bin/perl

# Tests for the descriptors a worker holds for proxied sessions that once
# moved bulk data: sessions that fetched or uploaded a megabyte and then
# sit idle hold their two sockets and nothing more (this module lends a
# splice pipe to a busy direction and takes it back once the direction is
# drained); the same sessions move megabytes again byte-exact; a reader
# that stops mid-transfer; nothing left once the sessions end.

###############################################################################

use warnings;
use strict;

use Test::More;

use Digest::MD5 qw/ md5_hex /;
use IO::Select;
use IO::Socket::INET;
use Socket qw/ CRLF SOL_SOCKET SO_RCVBUF /;

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

my $t = Test::Nginx->new()->has(qw/mail pop3/)
	->write_file_expand('nginx.conf', <<'EOF');

%%TEST_GLOBALS%%

daemon off;

events {
}

mail {
    auth_http  127.0.0.1:8081/auth;
    proxy_timeout 60s;

    server {
        listen     127.0.0.1:8110;
        protocol   pop3;
    }
}

EOF

port($_) for 8081, 8111;

$t->run_daemon(\&auth_daemon);
$t->run_daemon(\&backend);
$t->run();

$t->waitforsocket('127.0.0.1:' . port($_)) for 8081, 8111;

###############################################################################

my $mib = 1024 * 1024;
my $sessions = 5;

# the worker's descriptors once it has served a session and none is open

my $worker = worker_pid();
my $s = login();
$s->send('QUIT');
$s->read();
undef $s;
my $base = settled_fds($worker);

plan(skip_all => 'no /proc') unless defined $base;
$t->plan(14);
note("worker descriptors with no session open: $base");

# sessions that fetched a megabyte and went idle hold two sockets each

my @s = map { login() } 1 .. $sessions;

is(fetch_all(@s), $sessions, 'retr 1m in each session byte-exact');
my $fds = settled_fds($worker);
note("after $sessions sessions fetched 1 MiB and went idle: $fds");
is($fds, $base + 2 * $sessions, 'idle after a download: 2 per session')
	or diag(fd_list($worker));

# the same sessions fetch again: their bulk path is still there

is(fetch_all(@s), $sessions, 'retr 1m again byte-exact');
is(settled_fds($worker), $base + 2 * $sessions, 'idle after a second download')
	or diag(fd_list($worker));

# a reader that stops mid-transfer: the stalled direction may hold a pipe
# while it waits, and gives it back once the reader has taken everything

$s = login();
setsockopt($s->socket(), SOL_SOCKET, SO_RCVBUF, 65536);
$s->send('RETR ' . 16 * $mib);
select undef, undef, undef, 0.5;
is(settled_fds($worker), $base + 2 * ($sessions + 1) + ($stock ? 0 : 2),
	'a stalled transfer holds one pipe')
	or diag(fd_list($worker));

$s->read();
is(md5_hex(read_message($s)), md5_hex(message(16 * $mib)), 'stalled reader gets every byte');
is(settled_fds($worker), $base + 2 * ($sessions + 1), 'and the pipe is given back')
	or diag(fd_list($worker));

# uploads and downloads in the same sessions

my $upload = message($mib);
my $ok = 0;
for my $c (@s) {
	$c->send('XUPL ' . length($upload));
	$c->read();
	write_all($c->socket(), $upload);
	$ok++ if ($c->read() // '') eq '+OK ' . md5_hex($upload) . CRLF;
}
is($ok, $sessions, 'upload 1m in each session byte-exact');
is(fetch_all(@s), $sessions, 'then retr 1m byte-exact');
is(settled_fds($worker), $base + 2 * ($sessions + 1), 'idle after upload and download')
	or diag(fd_list($worker));

# both ways at once: the backend echoes the upload as it reads it

$ok = 0;
for my $c (@s) {
	$c->send('XECH ' . length($upload));
	$c->read();
	$ok++ if md5_hex(echo($c->socket(), $upload)) eq md5_hex($upload . '.' . CRLF);
}
is($ok, $sessions, 'upload echoed back byte-exact');
is(settled_fds($worker), $base + 2 * ($sessions + 1), 'idle after both ways at once')
	or diag(fd_list($worker));

# commands still work in idle sessions; small replies go through the buffer

$ok = 0;
for my $c (@s, $s) {
	$c->send('NOOP');
	$ok++ if ($c->read() // '') eq '+OK NOOP' . CRLF;
}
is($ok, $sessions + 1, 'commands after bulk data');

# every session ends: nothing left behind

for my $c (@s, $s) {
	$c->send('QUIT');
	$c->read();
}
undef @s;
undef $s;
is(settled_fds($worker), $base, 'sessions closed: back to the start')
	or diag(fd_list($worker));

# the harness's final checks run when $t goes; helper subs that use it
# would otherwise keep it alive past Test::More's plan check.
undef $t;

###############################################################################

sub login {
	my $s = Test::Nginx::POP3->new();
	$s->read();
	$s->send('USER bulk');
	$s->read();
	$s->send('PASS secret');
	$s->read();
	return $s;
}

# RETR 1m in each session, one after another; how many came byte-exact
sub fetch_all {
	my $want = md5_hex(message($mib));
	my $ok = 0;
	for my $c (@_) {
		$c->send("RETR $mib");
		$c->read();
		$ok++ if md5_hex(read_message($c)) eq $want;
	}
	return $ok;
}

# a multi-line reply, dot-terminated
sub read_message {
	my ($s) = @_;
	my $body = '';
	while (defined(my $l = $s->read())) {
		last if $l eq ".\r\n";
		$body .= $l;
	}
	return $body;
}

sub write_all {
	my ($sock, $data) = @_;
	while (length $data) {
		my $n = $sock->syswrite($data, 65536);
		die "write: $!" unless defined $n;
		substr($data, 0, $n, '');
	}
}

# writes $data while reading what comes back, until the echo and the
# backend's final dot are in (or 10 s pass without progress)
sub echo {
	my ($sock, $data) = @_;
	my ($off, $got, $want) = (0, '', length($data) + 3);
	$sock->blocking(0);
	while (length $got < $want) {
		my $w = $off < length $data ? IO::Select->new($sock) : undef;
		my ($r, $wr) = IO::Select->select(IO::Select->new($sock), $w, undef, 10);
		last unless $r || $wr;
		if ($wr && @$wr) {
			my $n = $sock->syswrite($data, 65536, $off);
			$off += $n if $n;
		}
		if ($r && @$r) {
			my $n = $sock->sysread(my $buf, 65536);
			last unless $n;
			$got .= $buf;
		}
	}
	$sock->blocking(1);
	return $got;
}

# the only worker of the nginx under test, by the master's pid file
sub worker_pid {
	my $master = $t->read_file('nginx.pid');
	return undef unless defined $master;
	chomp $master;
	for (1 .. 50) {
		if (open my $fh, '<', "/proc/$master/task/$master/children") {
			my ($pid) = split ' ', (<$fh> // '');
			return $pid if $pid;
		}
		select undef, undef, undef, 0.1;
	}
	return undef;
}

sub fd_names {
	my ($pid) = @_;
	return () unless defined $pid && opendir(my $dh, "/proc/$pid/fd");
	return grep { !/^\./ } readdir $dh;
}

# the count once it has not changed for half a second (at most 10 s)
sub settled_fds {
	my ($pid) = @_;
	return undef unless defined $pid && -d "/proc/$pid/fd";
	my ($last, $same) = (scalar fd_names($pid), 0);
	for (1 .. 100) {
		select undef, undef, undef, 0.1;
		my $now = fd_names($pid);
		$same = $now == $last ? $same + 1 : 0;
		$last = $now;
		last if $same >= 5;
	}
	return $last;
}

sub fd_list {
	my ($pid) = @_;
	return join ' ', map { "$_:" . (readlink("/proc/$pid/fd/$_") // '?') }
		sort { $a <=> $b } fd_names($pid);
}

# A deterministic message of $size bytes in CRLF lines, none starting with a dot.
sub message {
	my ($size) = @_;
	my $line = join('', map { chr(ord('a') + ($_ * 7) % 26) } 0 .. 69) . CRLF;
	my $body = $line x int($size / length($line));
	my $rest = $size - length($body);
	$body .= ('q' x ($rest - 2)) . CRLF if $rest >= 2;
	$body .= 'y' if $rest == 1;
	return $body;
}

sub auth_daemon {
	my $server = IO::Socket::INET->new(Proto => 'tcp',
		LocalAddr => '127.0.0.1:' . port(8081), Listen => 16,
		ReuseAddr => 1) or die "auth listen: $!";
	while (my $c = $server->accept()) {
		while (defined(my $l = <$c>)) {
			last if $l eq CRLF;
		}
		print $c "HTTP/1.0 200 OK" . CRLF . "Auth-Status: OK" . CRLF
			. "Auth-Server: 127.0.0.1" . CRLF
			. "Auth-Port: " . port(8111) . CRLF . CRLF;
		close $c;
	}
}

sub backend {
	my $server = IO::Socket::INET->new(Proto => 'tcp',
		LocalAddr => '127.0.0.1:' . port(8111), Listen => 16,
		ReuseAddr => 1) or die "backend listen: $!";
	local $SIG{PIPE} = 'IGNORE';
	while (my $c = $server->accept()) {
		if (fork() == 0) {
			serve($c);
			exit 0;
		}
		close $c;
	}
}

# USER, PASS, RETR <size>, XUPL <size> (replies with the upload's md5),
# XECH <size> (sends each piece of the upload back as it comes, then a
# dot line), QUIT
sub serve {
	my ($c) = @_;
	$c->autoflush(1);
	print $c "+OK backend ready" . CRLF;
	while (defined(my $l = <$c>)) {
		my ($cmd, $arg) = $l =~ /^(\S*)\s*(.*?)\r?$/;
		$cmd = uc $cmd;
		if ($cmd eq 'USER') {
			print $c "+OK" . CRLF;
		} elsif ($cmd eq 'PASS') {
			print $c "+OK logged in" . CRLF;
		} elsif ($cmd eq 'RETR') {
			print $c "+OK $arg octets" . CRLF . message($arg) . "." . CRLF;
		} elsif ($cmd eq 'XUPL') {
			print $c "+ go ahead" . CRLF;
			my $data = '';
			while (length($data) < $arg) {
				my $n = read($c, $data, $arg - length($data), length $data);
				last unless $n;
			}
			print $c "+OK " . md5_hex($data) . CRLF;
		} elsif ($cmd eq 'XECH') {
			print $c "+ go ahead" . CRLF;
			my $left = $arg;
			while ($left > 0) {
				my $n = read($c, my $buf, $left < 65536 ? $left : 65536);
				last unless $n;
				print $c $buf;
				$left -= $n;
			}
			print $c "." . CRLF;
		} elsif ($cmd eq 'QUIT') {
			print $c "+OK bye" . CRLF;
			return;
		} else {
			print $c "+OK $cmd" . CRLF;
		}
	}
}

###############################################################################
