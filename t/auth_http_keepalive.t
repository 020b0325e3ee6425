#!/usr/bin/perl

# Tests for auth_http_keepalive (ours; stock 1.28 has none): logins reuse
# one HTTP/1.1 connection to the auth server, seen by the auth server; off,
# each login has its own HTTP/1.0 connection as stock; a kept connection
# the server drops is retried once on a new one; a body longer than the
# buffer, or an answer a byte at a time, is read to its end and the
# connection reused; half answers, chunks, bad lengths and stalls give the
# stock error, and the next login gets its own answer, never one left on
# the connection (each user names its own backend); the idle timeout
# closes a kept connection.

###############################################################################

use warnings;
use strict;

use Test::More;

use IO::Select;
use IO::Socket::INET;
use Socket qw/ CRLF SOL_SOCKET SO_LINGER /;

BEGIN { use FindBin; chdir($FindBin::Bin); }

use lib 'lib';
use Test::Nginx;
use Test::Nginx::POP3;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

local $SIG{PIPE} = 'IGNORE';

my $stock = ($ENV{TEST_NGINX_GLOBALS} // '') !~ /ngx_mail_rs/;
plan(skip_all => 'auth_http_keepalive is ours; stock 1.28 has none')
	if $stock;

my $t = Test::Nginx->new()->has(qw/mail pop3/)
	->write_file_expand('nginx.conf', <<'EOF');

%%TEST_GLOBALS%%

daemon off;

events {
}

mail {
    auth_http  127.0.0.1:8081/auth;
    auth_http_timeout 1s;

    server {
        listen     127.0.0.1:8110;
        protocol   pop3;
        auth_http_keepalive 4;
    }

    server {
        listen     127.0.0.1:8113;
        protocol   pop3;
    }

    server {
        listen     127.0.0.1:8114;
        protocol   pop3;
        auth_http  127.0.0.1:8082/auth;
        auth_http_keepalive 1 timeout=1s;
    }
}

EOF

my $d = $t->testdir();

port($_) for 8081, 8082, 8111, 8112;

$t->run_daemon(\&auth_daemon, port(8081), "$d/auth.log");
$t->run_daemon(\&auth_daemon, port(8082), "$d/auth2.log");
$t->run_daemon(\&backend, port(8111), 'A');
$t->run_daemon(\&backend, port(8112), 'B');
$t->run()->plan(56);

$t->waitforsocket('127.0.0.1:' . port($_)) for 8081, 8082, 8111, 8112;

###############################################################################

sub login {
	my ($user, $port) = @_;
	my $s = Test::Nginx::POP3->new(PeerAddr => '127.0.0.1:' . port($port // 8110));
	$s->read();
	$s->send("USER $user");
	$s->read();
	$s->send('PASS secret');
	return $s;
}

# the auth server's record of each request: connection, its request
# number on that connection, user, HTTP version, Connection header
sub requests {
	my ($file) = @_;
	my @r;
	for (split /\n/, $t->read_file($file // 'auth.log')) {
		next unless /^request conn=(\d+) n=(\d+) user=(\S*) proto=(\S*) connection=(\S*)/;
		push @r, { conn => $1, n => $2, user => $3, proto => $4, hdr => $5 };
	}
	return @r;
}

sub of {
	my ($user, $file) = @_;
	return grep { $_->{user} eq $user } requests($file);
}

# keepalive: five logins, one connection

for my $i (1 .. 5) {
	login("a$i")->check(qr/^\+OK backend A says hello/, "login a$i");
}
my @r = grep { $_->{user} =~ /^a\d$/ } requests();
is(scalar(@r), 5, 'five requests');
is(scalar(keys %{{ map { $_->{conn} => 1 } @r }}), 1, 'all on one connection');
is(join(',', map { $_->{n} } @r), '1,2,3,4,5', 'one after the other');
is(join(',', map { "$_->{proto} $_->{hdr}" } @r[0, 4]),
	'HTTP/1.1 keep-alive,HTTP/1.1 keep-alive', 'HTTP/1.1 with keep-alive');
my $kept = $r[0]{conn};

# without auth_http_keepalive: stock's HTTP/1.0, one connection a login

for my $i (1 .. 3) {
	login("s$i", 8113)->check(qr/^\+OK backend A says hello/, "stock path s$i");
}
@r = grep { $_->{user} =~ /^s\d$/ } requests();
is(scalar(keys %{{ map { $_->{conn} => 1 } @r }}), 3, 'stock path: three connections');
is(join(',', map { "$_->{n} $_->{proto} $_->{hdr}" } @r),
	'1 HTTP/1.0 -,1 HTTP/1.0 -,1 HTTP/1.0 -', 'stock path: HTTP/1.0');

# a body longer than the response buffer is read to its end

login('longbody')->check(qr/^\+OK backend A says hello/, 'answer with a long body');
login('a6')->check(qr/^\+OK backend A says hello/, 'after the long body');
is((of('a6'))[0]{conn}, (of('longbody'))[0]{conn}, 'connection reused after the body');
is((of('longbody'))[0]{conn}, $kept, 'still the first connection');

# an answer that comes a byte at a time, its body included: read whole,
# and its connection kept for the next login

login('dribble')->check(qr/^\+OK backend A says hello/, 'answer a byte at a time');
login('a10')->check(qr/^\+OK backend A says hello/, 'after the dribbled answer');
is((of('a10'))[0]{conn}, (of('dribble'))[0]{conn}, 'connection reused after it');

# a body of 4 MiB: the answer is taken, the body not drained, the
# connection not kept

login('hugebody')->check(qr/^\+OK backend A says hello/, 'answer with a 4 MiB body');
login('a11')->check(qr/^\+OK backend A says hello/, 'after the 4 MiB body');
isnt((of('a11'))[0]{conn}, (of('hugebody'))[0]{conn}, 'not on that connection');

# Connection: close is honoured

login('closing')->check(qr/^\+OK backend A says hello/, 'answer with close');
login('a7')->check(qr/^\+OK backend A says hello/, 'after close');
isnt((of('a7'))[0]{conn}, (of('closing'))[0]{conn}, 'new connection after close');
is((of('a7'))[0]{n}, 1, 'first request on it');

# the server closes a kept connection when the next request arrives on it:
# the request goes again on a new connection, once

login('vanish')->check(qr/^\+OK backend A says hello/, 'login on a lost connection');
@r = of('vanish');
is(scalar(@r), 2, 'asked twice');
ok($r[0]{n} > 1 && $r[1]{n} == 1 && $r[0]{conn} != $r[1]{conn},
	'first on the kept connection, then on a new one');

# the same with a reset: asked again, and the reset is no error in the log

login('reset')->check(qr/^\+OK backend A says hello/, 'login on a reset connection');
@r = of('reset');
ok(@r == 2 && $r[0]{n} > 1 && $r[1]{n} == 1, 'asked again on a new connection');
my $log = $t->read_file('error.log');
like($log, qr/\[info\] .*\(104: Connection reset by peer\).*login: "reset"/,
	'the reset logged at info');
unlike($log, qr/\[error\] .*login: "reset"/, 'no error for it');

# the server closes a kept connection right after an answer

login('dropidle')->check(qr/^\+OK backend A says hello/, 'answer then close');
login('b1')->check(qr/^\+OK backend B says hello/, 'login after the close');
isnt((of('b1'))[-1]{conn}, (of('dropidle'))[0]{conn}, 'on a new connection');

# half an answer: the stock error, and the next login gets its own answer

login('half')->check(qr/^-ERR internal server error\r\n$/, 'half a body');
login('b2')->check(qr/^\+OK backend B says hello/, 'own answer after half a body');

login('halfhead')->check(qr/^-ERR internal server error\r\n$/, 'half a header');
login('b3')->check(qr/^\+OK backend B says hello/, 'own answer after half a header');

# an answer followed by a second one nobody asked for (for backend A): the
# connection is not reused, the next login asks afresh

login('double')->check(qr/^\+OK backend A says hello/, 'answer with a spare one');
login('b4')->check(qr/^\+OK backend B says hello/, 'spare answer not used');
isnt((of('b4'))[0]{conn}, (of('double'))[0]{conn}, 'not on that connection');

# what cannot be framed is garbage

login('chunked')->check(qr/^-ERR internal server error\r\n$/, 'chunked');
login('badlen')->check(qr/^-ERR internal server error\r\n$/, 'negative length');
login('twolen')->check(qr/^-ERR internal server error\r\n$/, 'two lengths');
login('s4', 8113)->check(qr/^\+OK backend A says hello/,
	'stock path ignores the same headers (chunked)');

# a stall: auth_http_timeout, and the next login is fine

login('stall')->check(qr/^-ERR internal server error\r\n$/, 'stalled answer');
login('b5')->check(qr/^\+OK backend B says hello/, 'own answer after a stall');
isnt((of('b5'))[0]{conn}, (of('stall'))[0]{conn}, 'not on the stalled connection');

# the idle timeout closes a kept connection (seen by the auth server)

login('a8', 8114)->check(qr/^\+OK backend A says hello/, 'login, timeout=1s');
my $conn = (of('a8', 'auth2.log'))[0]{conn};
my $closed;
for (1 .. 100) {
	last if $closed = $t->read_file('auth2.log') =~ /^eof conn=$conn$/m;
	select undef, undef, undef, 0.1;
}
ok($closed, 'idle connection closed by nginx');
login('a9', 8114)->check(qr/^\+OK backend A says hello/, 'login after the idle close');
isnt((of('a9', 'auth2.log'))[0]{conn}, $conn, 'on a new connection');

###############################################################################

sub logline {
	my ($file, $line) = @_;
	open my $fh, '>>', $file or die;
	print $fh "$line\n";
	close $fh;
}

# An auth server with keepalive: many connections at once, each request
# logged with its connection; some users make it misbehave.
sub auth_daemon {
	my ($port, $file) = @_;
	my $server = IO::Socket::INET->new(Proto => 'tcp',
		LocalAddr => "127.0.0.1:$port", Listen => 64, ReuseAddr => 1)
		or die "auth listen: $!";
	my $sel = IO::Select->new($server);
	my (%id, %buf, %n, @held);
	my $next = 0;
	while (1) {
		for my $c ($sel->can_read()) {
			if ($c == $server) {
				my $new = $server->accept() or next;
				$new->autoflush(1);
				$id{$new} = ++$next;
				$buf{$new} = '';
				$n{$new} = 0;
				$sel->add($new);
				next;
			}
			my $got = sysread($c, $buf{$c}, 4096, length $buf{$c});
			if (!$got) {
				logline($file, "eof conn=$id{$c}");
				$sel->remove($c);
				close $c;
				next;
			}
			while ($buf{$c} =~ s/^(.*?\r\n\r\n)//s) {
				my $req = $1;
				my $n = ++$n{$c};
				my ($proto) = $req =~ m!^GET \S+ (HTTP/1\.\d)\r\n!;
				my ($user) = $req =~ /^Auth-User: (.*)\r$/m;
				my ($hdr) = $req =~ /^Connection: (.*)\r$/m;
				$user //= '';
				logline($file, "request conn=$id{$c} n=$n user=$user"
					. " proto=" . ($proto // '-')
					. " connection=" . ($hdr // '-'));
				my $action = answer($c, $user, $n, $proto // '');
				if ($action eq 'close') {
					$sel->remove($c);
					close $c;
					last;
				} elsif ($action eq 'hold') {
					push @held, $c;
					$sel->remove($c);
					last;
				}
			}
		}
	}
}

# Writes the answer for $user; says what to do with the connection.
sub answer {
	my ($c, $user, $n, $proto) = @_;
	my $port = port($user =~ /^b/ ? 8112 : 8111);
	my $ok = "Auth-Status: OK" . CRLF . "Auth-Server: 127.0.0.1" . CRLF
		. "Auth-Port: $port" . CRLF;
	if ($proto eq 'HTTP/1.0') {
		# as a stock client wants it: the close ends the answer
		my $te = $user eq 's4' ? "Transfer-Encoding: chunked" . CRLF : '';
		print $c "HTTP/1.0 200 OK" . CRLF . $te . $ok . CRLF;
		return 'close';
	}
	my $head = "HTTP/1.1 200 OK" . CRLF . $ok;
	if ($user eq 'vanish' && $n > 1) {
		return 'close';
	} elsif ($user eq 'reset' && $n > 1) {
		setsockopt($c, SOL_SOCKET, SO_LINGER, pack('ii', 1, 0));
		return 'close';
	} elsif ($user eq 'stall') {
		return 'hold';
	} elsif ($user eq 'longbody') {
		print $c $head . "Content-Length: 3000" . CRLF . CRLF . ('x' x 3000);
	} elsif ($user eq 'dribble') {
		for my $byte (split //, $head . "Content-Length: 5" . CRLF . CRLF
			. "hello")
		{
			print $c $byte;
			select undef, undef, undef, 0.002;
		}
	} elsif ($user eq 'hugebody') {
		print $c $head . "Content-Length: 4194304" . CRLF . CRLF;
		# stops when the proxy closes; kept otherwise, to be seen reused
		print $c 'x' x 65536 or last for 1 .. 64;
	} elsif ($user eq 'closing') {
		print $c $head . "Content-Length: 0" . CRLF . "Connection: close"
			. CRLF . CRLF;
		return 'close';
	} elsif ($user eq 'dropidle') {
		print $c $head . "Content-Length: 0" . CRLF . CRLF;
		return 'close';
	} elsif ($user eq 'half') {
		print $c $head . "Content-Length: 10" . CRLF . CRLF . "abc";
		return 'close';
	} elsif ($user eq 'halfhead') {
		print $c "HTTP/1.1 200 OK" . CRLF . "Auth-Status: OK" . CRLF
			. "Auth-Ser";
		return 'close';
	} elsif ($user eq 'double') {
		my $a = "HTTP/1.1 200 OK" . CRLF . "Auth-Status: OK" . CRLF
			. "Auth-Server: 127.0.0.1" . CRLF . "Auth-Port: " . port(8111)
			. CRLF . "Content-Length: 0" . CRLF . CRLF;
		print $c $a . $a;
	} elsif ($user eq 'chunked') {
		print $c $head . "Transfer-Encoding: chunked" . CRLF . CRLF
			. "0" . CRLF . CRLF;
	} elsif ($user eq 'badlen') {
		print $c $head . "Content-Length: -1" . CRLF . CRLF;
	} elsif ($user eq 'twolen') {
		print $c $head . "Content-Length: 0" . CRLF . "Content-Length: 1"
			. CRLF . CRLF . "x";
	} else {
		print $c $head . "Content-Length: 0" . CRLF . CRLF;
	}
	return 'keep';
}

sub backend {
	my ($port, $name) = @_;
	my $server = IO::Socket::INET->new(Proto => 'tcp',
		LocalAddr => "127.0.0.1:$port", Listen => 64, ReuseAddr => 1)
		or die "backend listen: $!";
	while (my $c = $server->accept()) {
		$c->autoflush(1);
		print $c "+OK backend $name ready" . CRLF;
		while (defined(my $l = <$c>)) {
			if ($l =~ /^PASS/) {
				print $c "+OK backend $name says hello" . CRLF;
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
