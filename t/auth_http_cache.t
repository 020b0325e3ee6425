#!/usr/bin/perl

# Tests for auth_http_cache (ours; stock 1.28 has none): an answer is kept
# for `valid` and a refusal for `invalid` (the auth server sees one request
# for two logins); another password, user or mail server is another key;
# Auth-Cache-TTL overrides, 0 is never; APOP, CRAM-MD5, WAIT, Auth-Wait and
# answers with Auth-Pass are never kept; entries expire; a small zone
# evicts the least recently used.

###############################################################################

use warnings;
use strict;

use Test::More;

use IO::Socket::INET;
use MIME::Base64;
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
plan(skip_all => 'auth_http_cache is ours; stock 1.28 has none')
	if $stock;

my $t = Test::Nginx->new()->has(qw/mail pop3 mail_ssl/)
	->write_file_expand('nginx.conf', <<'EOF');

%%TEST_GLOBALS%%

daemon off;

events {
}

mail {
    auth_http  127.0.0.1:8081/auth;
    auth_http_timeout 2s;

    server {
        listen     127.0.0.1:8110;
        protocol   pop3;
        pop3_auth  plain apop cram-md5;
        auth_http_cache zone=auth:1m valid=1m invalid=1m;
    }

    server {
        listen     127.0.0.1:8113;
        protocol   pop3;
        auth_http_cache zone=auth:1m;
    }

    server {
        listen     127.0.0.1:8114;
        protocol   pop3;
        auth_http_cache zone=short:1m valid=1s;
    }

    server {
        listen     127.0.0.1:8115;
        protocol   pop3;
        auth_http_cache zone=tiny:32k;
    }

    server {
        listen     127.0.0.1:8116;
        protocol   pop3;
    }
}

EOF

my $d = $t->testdir();

port($_) for 8081, 8111;

$t->run_daemon(\&auth_daemon, port(8081), "$d/auth.log");
$t->run_daemon(\&backend, port(8111));
$t->run()->plan(38);

$t->waitforsocket('127.0.0.1:' . port($_)) for 8081, 8111;

###############################################################################

sub login {
	my ($user, $pass, $port) = @_;
	my $s = Test::Nginx::POP3->new(PeerAddr => '127.0.0.1:' . port($port // 8110));
	$s->read();
	$s->send("USER $user");
	$s->read();
	$s->send("PASS $pass");
	return $s;
}

# requests the auth server got for $user
sub asked {
	my ($user) = @_;
	return scalar grep { $_ eq $user } split /\n/, $t->read_file('auth.log');
}

# an answer is kept

login('u1', 'p1')->check(qr/^\+OK backend says hello/, 'first login');
login('u1', 'p1')->check(qr/^\+OK backend says hello/, 'second login');
is(asked('u1'), 1, 'second login answered from the cache');

# the key: the password, the user, the mail server

login('u1', 'other')->check(qr/^\+OK backend says hello/, 'another password');
is(asked('u1'), 2, 'another password is another key');
login('u2', 'p1')->check(qr/^\+OK backend says hello/, 'another user');
is(asked('u2'), 1, 'another user asked');
login('u1', 'p1', 8113)->check(qr/^\+OK backend says hello/, 'another server, same zone');
is(asked('u1'), 3, 'another mail server is another key');

# a refusal is kept for invalid, with its text

login('refuse', 'x')->check(qr/^-ERR go away\r\n$/, 'refused');
login('refuse', 'x')->check(qr/^-ERR go away\r\n$/, 'refused again');
is(asked('refuse'), 1, 'refusal answered from the cache');

# invalid=0 (the default): refusals are not kept

login('refuse', 'x', 8113)->check(qr/^-ERR go away\r\n$/, 'refused, invalid=0');
login('refuse', 'x', 8113)->check(qr/^-ERR go away\r\n$/, 'refused again, invalid=0');
is(asked('refuse'), 3, 'refusals not kept with invalid=0');

# never kept: Auth-Cache-TTL: 0, Auth-Pass, Auth-Wait, WAIT

for my $user (qw/ ttl0 withpass authwait wait /) {
	my $want = $user eq 'authwait' ? qr/^-ERR slow down\r\n$/
		: qr/^\+OK backend says hello/;
	login($user, 'x')->check($want, "$user login") for 1 .. 2;
}
is(asked('ttl0'), 2, 'Auth-Cache-TTL: 0 is never kept');
is(asked('withpass'), 2, 'an answer with Auth-Pass is never kept');
is(asked('authwait'), 2, 'a refusal with Auth-Wait is never kept');
is(asked('wait'), 4, 'WAIT is never kept (asked twice per login)');

# never kept: APOP and CRAM-MD5 (salted per session)

for (1 .. 2) {
	my $s = Test::Nginx::POP3->new(PeerAddr => '127.0.0.1:' . port(8110));
	$s->read();
	$s->send('APOP apop ' . ('f' x 32));
	$s->check(qr/^\+OK backend says hello/, 'apop login');
}
is(asked('apop'), 2, 'APOP is never kept');

# expiry: valid=1s, and Auth-Cache-TTL overrides valid

login('e1', 'p', 8114)->check(qr/^\+OK backend says hello/, 'valid=1s');
login('e1', 'p', 8114)->check(qr/^\+OK backend says hello/, 'within 1s');
my $within = asked('e1');
select undef, undef, undef, 1.5;
login('e1', 'p', 8114)->check(qr/^\+OK backend says hello/, 'after 1s');
is(asked('e1') - $within, 1, 'asked again after valid');

# LRU: a 32k zone cannot hold 400 answers; the first goes, the latest stays

login("l$_", 'p', 8115)->read() for 0 .. 399;
login('l399', 'p', 8115)->check(qr/^\+OK backend says hello/, 'latest login');
is(asked('l399'), 1, 'the latest kept');
login('l0', 'p', 8115)->check(qr/^\+OK backend says hello/, 'oldest login');
is(asked('l0'), 2, 'the oldest evicted');

###############################################################################

sub auth_daemon {
	my ($port, $file) = @_;
	my $server = IO::Socket::INET->new(Proto => 'tcp',
		LocalAddr => "127.0.0.1:$port", Listen => 64, ReuseAddr => 1)
		or die "auth listen: $!";
	my %waited;
	while (my $c = $server->accept()) {
		$c->autoflush(1);
		my $req = '';
		while (defined(my $l = <$c>)) {
			$req .= $l;
			last if $l eq CRLF;
		}
		my ($user) = $req =~ /^Auth-User: (.*)\r$/m;
		next unless defined $user;
		open my $fh, '>>', $file or die;
		print $fh "$user\n";
		close $fh;
		my $reply = "HTTP/1.0 200 OK" . CRLF;
		my $ok = "Auth-Status: OK" . CRLF . "Auth-Server: 127.0.0.1" . CRLF
			. "Auth-Port: " . port(8111) . CRLF;
		if ($user eq 'refuse') {
			$reply .= "Auth-Status: go away" . CRLF;
		} elsif ($user eq 'ttl0') {
			$reply .= $ok . "Auth-Cache-TTL: 0" . CRLF;
		} elsif ($user eq 'withpass' || $user eq 'apop') {
			$reply .= $ok . "Auth-Pass: secret" . CRLF;
		} elsif ($user eq 'authwait') {
			$reply .= "Auth-Status: slow down" . CRLF . "Auth-Wait: 1" . CRLF;
		} elsif ($user eq 'wait' && $waited{$user}++ % 2 == 0) {
			$reply .= "Auth-Status: WAIT" . CRLF . "Auth-Wait: 0" . CRLF;
		} else {
			$reply .= $ok;
		}
		print $c $reply . CRLF;
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
