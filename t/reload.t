#!/usr/bin/perl

# Tests for a reload with sessions open: worker_shutdown_timeout closes
# proxied POP3, IMAP and SMTP sessions, and with this module also sessions
# still before login, waiting for the auth server or logging in to the
# backend (stock keeps those until their own timeouts); the new worker
# serves new sessions.

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
use Test::Nginx::IMAP;
use Test::Nginx::SMTP;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

local $SIG{PIPE} = 'IGNORE';

# checks of stock-version behaviour only apply to stock modules
my $stock = ($ENV{TEST_NGINX_GLOBALS} // '') !~ /ngx_mail_rs/;

my $t = Test::Nginx->new()->has(qw/mail pop3 imap smtp/)
	->write_file_expand('nginx.conf', <<'EOF');

%%TEST_GLOBALS%%

daemon off;
worker_shutdown_timeout 1s;

events {
}

mail {
    auth_http  127.0.0.1:8081/auth;
    auth_http_timeout 3s;
    timeout    3s;

    server {
        listen     127.0.0.1:8110;
        protocol   pop3;
    }

    server {
        listen     127.0.0.1:8143;
        protocol   imap;
    }

    server {
        listen     127.0.0.1:8025;
        protocol   smtp;
    }
}

EOF

port($_) for 8081 .. 8085;

$t->run_daemon(\&auth_daemon);
$t->run_daemon(\&backend, $_) for qw/pop3 imap smtp/;
$t->run_daemon(\&silent_backend);
$t->run()->plan($stock ? 14 : 13);

$t->waitforsocket('127.0.0.1:' . port($_)) for 8081 .. 8085;

###############################################################################

my $pop3 = Test::Nginx::POP3->new();
$pop3->read();
$pop3->send('USER test@example.com');
$pop3->read();
$pop3->send('PASS secret');
$pop3->check(qr/^\+OK backend/, 'pop3 proxied');

my $imap = Test::Nginx::IMAP->new();
$imap->read();
$imap->send('a1 LOGIN test@example.com secret');
$imap->check(qr/^a1 OK backend/, 'imap proxied');

my $smtp = Test::Nginx::SMTP->new();
$smtp->read();
$smtp->send('AUTH PLAIN ' . encode_base64("\0test\@example.com\0secret", ''));
$smtp->authok('smtp proxied');

my $idle = Test::Nginx::POP3->new();
$idle->read();

# waiting for an auth server that does not answer, and for a backend that
# does not greet
my $authing = Test::Nginx::POP3->new();
$authing->read();
$authing->send('USER stall');
$authing->read();
$authing->send('PASS secret');

my $logging_in = Test::Nginx::POP3->new();
$logging_in->read();
$logging_in->send('USER silent');
$logging_in->read();
$logging_in->send('PASS secret');

$t->reload();

# the old worker serves its sessions until worker_shutdown_timeout
$pop3->send('NOOP');
$pop3->check(qr/^\+OK/, 'pop3 still proxied during the shutdown');

is($_->read(), undef, ref($_) . ' closed by worker_shutdown_timeout')
	for $pop3, $imap, $smtp;

if ($stock) {
	$idle->send('NOOP');
	$idle->check(qr/^\+OK/, 'stock: session before login still served');
	is($idle->read(), undef, 'stock: and closed by its own timeout');
	$_->check(qr/^-ERR internal server error/,
		'stock: waiting session ended by its own timeout')
		for $authing, $logging_in;
} else {
	$idle->send('NOOP');
	is($idle->read(), undef, 'session before login closed by the timeout');
	is($_->read(), undef, 'waiting session closed by the timeout')
		for $authing, $logging_in;
}

my $s = Test::Nginx::SMTP->new();
$s->read();
$s->send('AUTH PLAIN ' . encode_base64("\0test\@example.com\0secret", ''));
$s->authok('new session after the reload');

undef $s;
undef $_ for $pop3, $imap, $smtp, $idle, $authing, $logging_in;
$t->stop();

my $log = $t->read_file('error.log');
my $closed = () = $log =~ /shutdown timeout/g;
ok($closed >= ($stock ? 3 : 6), 'sessions logged as closed by the timeout');
unlike($log, qr/\[crit\]|\[emerg\]/, 'nothing worse logged');

# the harness's final checks run when $t goes; helper subs that use it
# would otherwise keep it alive past Test::More's plan check. Clients go
# first: nginx 1.22 logs an alert for a session still open at its exit.
undef $s;
undef $t;

###############################################################################

sub auth_daemon {
	my $server = IO::Socket::INET->new(Proto => 'tcp',
		LocalAddr => '127.0.0.1:' . port(8081), Listen => 64,
		ReuseAddr => 1) or die "auth listen: $!";
	my %backend = (pop3 => 8082, imap => 8083, smtp => 8084);
	my @held;
	while (my $c = $server->accept()) {
		my ($proto, $user) = ('pop3', '');
		while (defined(my $l = <$c>)) {
			$proto = $1 if $l =~ /^Auth-Protocol: (\w+)/;
			$user = $1 if $l =~ /^Auth-User: (\w+)/;
			last if $l eq CRLF;
		}
		if ($user eq 'stall') {
			push @held, $c;
			next;
		}
		my $port = port($user eq 'silent' ? 8085 : $backend{$proto});
		print $c "HTTP/1.0 200 OK" . CRLF . "Auth-Status: OK" . CRLF
			. "Auth-Server: 127.0.0.1" . CRLF
			. "Auth-Port: $port" . CRLF
			. "Auth-Pass: secret" . CRLF . CRLF;
		close $c;
	}
}

# A backend that accepts and never says a word.
sub silent_backend {
	my $server = IO::Socket::INET->new(Proto => 'tcp',
		LocalAddr => '127.0.0.1:' . port(8085), Listen => 64,
		ReuseAddr => 1) or die "backend listen: $!";
	my @held;
	while (my $c = $server->accept()) {
		push @held, $c;
	}
}

# A backend of one protocol; one process per connection, as sessions overlap.
sub backend {
	my ($proto) = @_;
	my %port = (pop3 => 8082, imap => 8083, smtp => 8084);
	my %greeting = (pop3 => '+OK backend ready', imap => '* OK backend ready',
		smtp => '220 backend ready');
	my $server = IO::Socket::INET->new(Proto => 'tcp',
		LocalAddr => '127.0.0.1:' . port($port{$proto}), Listen => 64,
		ReuseAddr => 1) or die "backend listen: $!";
	local $SIG{CHLD} = 'IGNORE';
	while (my $c = $server->accept()) {
		next if fork();
		$c->autoflush(1);
		print $c $greeting{$proto} . CRLF;
		my $tag;
		while (defined(my $l = <$c>)) {
			if ($proto eq 'imap') {
				# LOGIN comes with literals: the tag is on its first line
				$tag //= ($l =~ /^(\S+)/)[0];
				if ($l =~ /\}\r?\n\z/) {
					print $c "+ go" . CRLF;
					next;
				}
				print $c "$tag OK backend in" . CRLF;
				undef $tag;
			} elsif ($proto eq 'smtp') {
				print $c ($l =~ /^XCLIENT/ ? '220 ok' : '250 backend ok') . CRLF;
			} else {
				print $c ($l =~ /^PASS/ ? '+OK backend in' : '+OK') . CRLF;
			}
		}
		exit 0;
	}
}

###############################################################################
