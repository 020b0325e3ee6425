#!/usr/bin/perl

# Tests for auth_http_server (ours; stock 1.28 has none): several auth
# servers asked in turn; a server that refuses connections or answers
# garbage is skipped within the same login, one that stalls uses up
# auth_http_timeout; a failed server is left alone for fail_timeout and
# then asked again; with every server down the login gets the stock error
# and the servers are marked live again.

###############################################################################

use warnings;
use strict;

use Test::More;

use IO::Socket::INET;
use Socket qw/ CRLF /;

BEGIN { use FindBin; chdir($FindBin::Bin); }

use lib 'lib';
use Test::Nginx;
use Test::Nginx::POP3;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

local $SIG{PIPE} = 'IGNORE';

my $stock = ($ENV{TEST_NGINX_GLOBALS} // '') !~ /ngx_mail_rs/;
plan(skip_all => 'auth_http_server is ours; stock 1.28 has none')
	if $stock;

# 8081, 8085: good; 8082, 8086: nothing listens; 8083: garbage; 8084: stalls
my $t = Test::Nginx->new()->has(qw/mail pop3/)
	->write_file_expand('nginx.conf', <<'EOF');

%%TEST_GLOBALS%%

daemon off;

events {
}

mail {
    auth_http_server  127.0.0.1:8081/one;
    auth_http_server  127.0.0.1:8085/two;
    auth_http_timeout 1s;

    server {
        listen     127.0.0.1:8110;
        protocol   pop3;
    }

    server {
        listen     127.0.0.1:8113;
        protocol   pop3;
        auth_http_server  127.0.0.1:8082/down fail_timeout=60s;
        auth_http_server  127.0.0.1:8081/after-down;
    }

    server {
        listen     127.0.0.1:8114;
        protocol   pop3;
        auth_http_server  127.0.0.1:8083/garbage;
        auth_http_server  127.0.0.1:8081/after-garbage;
    }

    server {
        listen     127.0.0.1:8115;
        protocol   pop3;
        auth_http_server  127.0.0.1:8084/stall;
        auth_http_server  127.0.0.1:8081/after-stall;
    }

    server {
        listen     127.0.0.1:8116;
        protocol   pop3;
        auth_http_server  127.0.0.1:8086/down1;
        auth_http_server  127.0.0.1:8082/down2;
    }

    server {
        listen     127.0.0.1:8117;
        protocol   pop3;
        auth_http_server  127.0.0.1:8083/garbage fail_timeout=1s;
        auth_http_server  127.0.0.1:8085/after-short;
    }

    server {
        listen     127.0.0.1:8118;
        protocol   pop3;
        auth_http_server  127.0.0.1:8083/garbage max_fails=2;
        auth_http_server  127.0.0.1:8085/after-twice;
    }

    server {
        listen     127.0.0.1:8119;
        protocol   pop3;
        pop3_auth  plain apop;
        auth_http_server  127.0.0.1:8083/garbage;
        auth_http_server  127.0.0.1:8081/after-garbage-apop;
    }

    server {
        listen     127.0.0.1:8120;
        protocol   pop3;
        auth_http_server  127.0.0.1:8081/revive;
        auth_http_server  127.0.0.1:8082/down-too;
    }
}

EOF

my $d = $t->testdir();

port($_) for 8081, 8082, 8083, 8084, 8085, 8086, 8111;

$t->run_daemon(\&auth_daemon, port(8081), "$d/one.log", 'ok');
$t->run_daemon(\&auth_daemon, port(8085), "$d/two.log", 'ok');
$t->run_daemon(\&auth_daemon, port(8083), "$d/garbage.log", 'garbage');
$t->run_daemon(\&auth_daemon, port(8084), "$d/stall.log", 'stall');
$t->run_daemon(\&backend, port(8111));
$t->run()->plan(41);

$t->waitforsocket('127.0.0.1:' . port($_)) for 8081, 8083, 8084, 8085, 8111;

###############################################################################

sub login {
	my ($user, $port) = @_;
	my $s = Test::Nginx::POP3->new(PeerAddr => '127.0.0.1:' . port($port));
	$s->read();
	$s->send("USER $user");
	$s->read();
	$s->send('PASS secret');
	return $s;
}

# "uri user" of each request a server got
sub asked {
	my ($name) = @_;
	return join ',', map { /^GET (\S+) .* user=(\S*) pass=/ ? "$1 $2" : () }
		split /\n/, $t->read_file("$name.log");
}

# failures of a server that refuses connections (each one disables it)
sub refused {
	my ($port) = @_;
	my $p = port($port);
	return () = $t->read_file('error.log')
		=~ /auth http server 127\.0\.0\.1:$p temporarily disabled/g;
}

# round robin over two good servers

login("rr$_", 8110)->check(qr/^\+OK backend says hello/, "round robin $_")
	for 1 .. 4;
is(asked('one'), '/one rr1,/one rr3', 'first server: every other login');
is(asked('two'), '/two rr2,/two rr4', 'second server: the others');

# connection refused: the next server, in the same login

login('d1', 8113)->check(qr/^\+OK backend says hello/, 'login past a down server');
is(refused(8082), 1, 'down server tried first');
like(asked('one'), qr{/after-down d1$}, 'then the next one');
login("d$_", 8113)->check(qr/^\+OK backend says hello/, "login d$_ while down")
	for 2 .. 4;
is(refused(8082), 1, 'down server left alone for fail_timeout');
like($t->read_file('error.log'),
	qr/\[error\] .*Connection refused.*login: "d1"/, 'refused, logged');

# garbage: the next server, in the same login

login('g1', 8114)->check(qr/^\+OK backend says hello/, 'login past garbage');
is(asked('garbage'), '/garbage g1', 'garbage server asked first');
like(asked('one'), qr{/after-garbage g1$}, 'then the next one');
like($t->read_file('error.log'), qr/auth http server 127\.0\.0\.1:${\ port(8083)} sent invalid header in response/,
	'garbage logged');

# APOP: the next server gets the same digest (the password is forgotten
# only once an answer is in)

my $s = Test::Nginx::POP3->new(PeerAddr => '127.0.0.1:' . port(8119));
$s->read();
$s->send('APOP a1 ' . ('f' x 32));
$s->check(qr/^\+OK backend says hello/, 'apop past garbage');
undef $s;
my $digest = 'f' x 32;
like($t->read_file('garbage.log'), qr{^GET /garbage .* user=a1 pass=$digest$}m,
	'digest to the garbage server');
like($t->read_file('one.log'), qr{^GET /after-garbage-apop .* user=a1 pass=$digest$}m,
	'same digest to the next server');

# a stall uses up auth_http_timeout: this login fails, the next ones skip
# the stalled server

login('t1', 8115)->check(qr/^-ERR internal server error\r\n$/, 'stalled server');
like($t->read_file('error.log'),
	qr/auth http server 127\.0\.0\.1:${\ port(8084)} timed out/, 'timeout logged');
login("t$_", 8115)->check(qr/^\+OK backend says hello/, "login t$_ past the stall")
	for 2 .. 3;
is(asked('stall'), '/stall t1', 'stalled server asked once');

# every server down: the stock error; the next login finds none live,
# marks them all live again and asks them (a login is not refused for a
# count); and a good server down by count is asked again the same way

login('x1', 8116)->check(qr/^-ERR internal server error\r\n$/, 'both down');
is(refused(8086) + refused(8082), 3, 'each tried once (8082 once before)');
login('x2', 8116)->check(qr/^-ERR internal server error\r\n$/, 'none live');
like($t->read_file('error.log'),
	qr/\[warn\] .*no live auth http servers, asking them again.*login: "x2"/,
	'none live logged');
is(refused(8086) + refused(8082), 5, 'both asked again');

login('bad1', 8120)->check(qr/^-ERR internal server error\r\n$/,
	'garbage for this user, the other server down');
login('v2', 8120)->check(qr/^\+OK backend says hello/,
	'next login: both down by count, asked anyway');
is(join(',', grep { /^\/revive/ } split /,/, asked('one')),
	'/revive bad1,/revive v2', 'the good server asked by both');

# fail_timeout passes: the server is asked again

login('f1', 8117)->check(qr/^\+OK backend says hello/, 'past garbage, fail_timeout=1s');
login('f2', 8117)->check(qr/^\+OK backend says hello/, 'while it is down');
select undef, undef, undef, 1.5;
login('f3', 8117)->check(qr/^\+OK backend says hello/, 'after fail_timeout');
is(join(',', grep { /^\/garbage f/ } split /,/, asked('garbage')),
	'/garbage f1,/garbage f3', 'asked again after fail_timeout, not during');

# max_fails=2: one failure does not make it down

login("m$_", 8118)->check(qr/^\+OK backend says hello/, "max_fails=2 login m$_")
	for 1 .. 2;
is(join(',', grep { /^\/garbage m/ } split /,/, asked('garbage')),
	'/garbage m1,/garbage m2', 'asked by both logins');

###############################################################################

sub auth_daemon {
	my ($port, $file, $kind) = @_;
	my $server = IO::Socket::INET->new(Proto => 'tcp',
		LocalAddr => "127.0.0.1:$port", Listen => 64, ReuseAddr => 1)
		or die "auth listen: $!";
	my @held;
	while (my $c = $server->accept()) {
		$c->autoflush(1);
		my $req = '';
		while (defined(my $l = <$c>)) {
			$req .= $l;
			last if $l eq CRLF;
		}
		my ($line) = $req =~ /^(GET .*)\r$/m;
		my ($user) = $req =~ /^Auth-User: (.*)\r$/m;
		my ($pass) = $req =~ /^Auth-Pass: (.*)\r$/m;
		next unless defined $line;
		open my $fh, '>>', $file or die;
		print $fh "$line user=" . ($user // '') . " pass=" . ($pass // '') . "\n";
		close $fh;
		if ($kind eq 'stall') {
			push @held, $c;
			next;
		} elsif ($kind eq 'garbage' || ($user // '') =~ /^bad/) {
			print $c "\x00\x01 garbage" . CRLF . CRLF;
		} else {
			print $c "HTTP/1.0 200 OK" . CRLF . "Auth-Status: OK" . CRLF
				. "Auth-Server: 127.0.0.1" . CRLF
				. "Auth-Port: " . port(8111) . CRLF
				. "Auth-Pass: secret" . CRLF . CRLF;
		}
		close $c;
	}
}

sub backend {
	my ($port) = @_;
	my $server = IO::Socket::INET->new(Proto => 'tcp',
		LocalAddr => "127.0.0.1:$port", Listen => 64, ReuseAddr => 1)
		or die "backend listen: $!";
	while (my $c = $server->accept()) {
		$c->autoflush(1);
		print $c "+OK backend ready" . CRLF;
		while (defined(my $l = <$c>)) {
			if ($l =~ /^PASS/) {
				print $c "+OK backend says hello" . CRLF;
			} elsif ($l =~ /^QUIT/) {
				print $c "+OK bye" . CRLF;
				last;
			} else {
				print $c "+OK" . CRLF;
			}
		}
		close $c;
	}
}

###############################################################################
