#!/usr/bin/perl

# Tests that every session, however it ends, passes the one end-of-session
# hook (where the session log and metrics will hang): a QUIT, too many
# invalid commands, an auth server that is down, a client timeout, a client
# that just goes away, and a proxied session whose backend closes first. A debug
# build logs "mail session done" there, once per session.

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
plan(skip_all => 'a hook of this module') if $stock;
my $debug = `$ENV{TEST_NGINX_BINARY} -V 2>&1` =~ /--with-debug/;
plan(skip_all => 'not a debug build') unless $debug;

my $t = Test::Nginx->new()->has(qw/mail pop3/)
	->write_file_expand('nginx.conf', <<'EOF');

%%TEST_GLOBALS%%

daemon off;

events {
}

mail {
    auth_http  127.0.0.1:8081/auth;
    max_errors 2;
    timeout    1s;

    server {
        listen     127.0.0.1:8110;
        protocol   pop3;
    }

    server {
        listen     127.0.0.1:8111;
        protocol   pop3;
        auth_http  127.0.0.1:8083/down;
    }
}

EOF

port($_) for 8081, 8082, 8083;

$t->run_daemon(\&auth_daemon);
$t->run_daemon(\&backend);
$t->run()->plan(8);

$t->waitforsocket('127.0.0.1:' . port($_)) for 8081, 8082;

###############################################################################

sub done_count {
	return () = $t->read_file('error.log') =~ /mail session done/g;
}

# waits until the worker has logged `$n` ends
sub ends {
	my ($n) = @_;
	for (1 .. 50) {
		last if done_count() >= $n;
		select undef, undef, undef, 0.1;
	}
	return done_count();
}

my $s = Test::Nginx::POP3->new();
$s->read();
$s->send('QUIT');
$s->read();
is(ends(1), 1, 'quit');

$s = Test::Nginx::POP3->new();
$s->read();
$s->send('BOGUS');
$s->read();
$s->send('BOGUS');
$s->read();
is(ends(2), 2, 'too many invalid commands');

$s = Test::Nginx::POP3->new(PeerAddr => '127.0.0.1:' . port(8111));
$s->read();
$s->send('USER test');
$s->read();
$s->send('PASS secret');
$s->read();
is(ends(3), 3, 'auth server down: internal error');

$s = Test::Nginx::POP3->new();
$s->read();
is(ends(4), 4, 'client timed out');

$s = Test::Nginx::POP3->new();
$s->read();
undef $s;
is(ends(5), 5, 'client went away');

$s = Test::Nginx::POP3->new();
$s->read();
$s->send('USER test');
$s->read();
$s->send('PASS secret');
$s->read();
$s->send('QUIT');
$s->read();
# the backend's close is passed on as a half-close; the client's own
# close ends the session
is($s->read(), undef, 'backend close passed on');
undef $s;
is(ends(6), 6, 'proxied session ended');

undef $s;
$t->stop();
is(done_count(), 6, 'each session ended once');

undef $t;

###############################################################################

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
			. "Auth-Port: " . port(8082) . CRLF . CRLF;
		close $c;
	}
}

# A POP3 backend that takes any login and closes after QUIT.
sub backend {
	my $server = IO::Socket::INET->new(Proto => 'tcp',
		LocalAddr => '127.0.0.1:' . port(8082), Listen => 16,
		ReuseAddr => 1) or die "backend listen: $!";
	while (my $c = $server->accept()) {
		$c->autoflush(1);
		print $c '+OK ready' . CRLF;
		while (defined(my $l = <$c>)) {
			print $c '+OK' . CRLF;
			last if $l =~ /^QUIT/;
		}
		close $c;
	}
}

###############################################################################
