#!/usr/bin/perl

# Tests for how the proxy logs in to an SMTP backend beyond stock nginx:
# `proxy_smtp_auth login` (AUTH LOGIN, for backends such as Exchange that
# refuse AUTH PLAIN), `plain` as another name for `on`, and the auth
# server's `Auth-SMTP-Auth` header choosing per session.

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
use Test::Nginx::SMTP;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

local $SIG{PIPE} = 'IGNORE';

plan(skip_all => 'proxy_smtp_auth login and Auth-SMTP-Auth are ours')
	if ($ENV{TEST_NGINX_GLOBALS} // '') !~ /ngx_mail_rs/;

my $t = Test::Nginx->new()->has(qw/mail smtp/)
	->write_file_expand('nginx.conf', <<'EOF');

%%TEST_GLOBALS%%

daemon off;

events {
}

mail {
    auth_http  127.0.0.1:8081/auth;
    xclient    off;
    smtp_auth  plain login;

    server {
        listen     127.0.0.1:8025;
        protocol   smtp;
        proxy_smtp_auth login;
    }

    server {
        listen     127.0.0.1:8026;
        protocol   smtp;
        proxy_smtp_auth plain;
    }

    server {
        listen     127.0.0.1:8027;
        protocol   smtp;
    }
}

EOF

my $d = $t->testdir();

port($_) for 8081, 8082, 8083;

$t->run_daemon(\&auth_daemon);
$t->run_daemon(\&backend, $d, 8082, 1);
$t->run_daemon(\&backend, $d, 8083, 0);
$t->run()->plan(10);

$t->waitforsocket('127.0.0.1:' . port($_)) for 8081, 8082, 8083;

###############################################################################

# proxy_smtp_auth login: both prompts answered, the client told 235

my $s = login(8025, 'alice');
$s->check(qr/^235 2\.0\.0 OK\r\n$/, 'logged in through AUTH LOGIN');
is(backend_log('alice'), 'AUTH LOGIN|' . encode_base64('alice', '')
	. '|' . encode_base64('secret', ''), 'backend saw AUTH LOGIN, user, password');

# plain is the stock `on`

$s = login(8026, 'bob');
$s->check(qr/^235 /, 'logged in through AUTH PLAIN');
is(backend_log('bob'), 'AUTH PLAIN ' . encode_base64("\0bob\0secret", ''),
	'proxy_smtp_auth plain sends AUTH PLAIN');

# the auth server chooses: login where the directive says nothing

$s = login(8027, 'carol-login');
$s->check(qr/^235 /, 'Auth-SMTP-Auth: login');
like(backend_log('carol-login'), qr/^AUTH LOGIN\|/, 'header turns AUTH LOGIN on');

# ... and off where the directive says login

$s = login(8025, 'dave-off');
$s->check(qr/^235 /, 'Auth-SMTP-Auth: off');
is(backend_log('dave-off'), '', 'header turns backend login off');

# a backend without AUTH LOGIN: the client gets the internal error

$s = login(8025, 'erin');
$s->check(qr/^451 4\.3\.2 Internal server error\r\n$/,
	'backend refusing AUTH LOGIN');

# bad values

my $conf = $t->read_file('nginx.conf');
$conf =~ s/proxy_smtp_auth plain;/proxy_smtp_auth cram-md5;/;
$t->write_file('bad.conf', $conf);
like(`$Test::Nginx::NGINX -p $d/ -c bad.conf -t 2>&1`,
	qr/\[emerg\] .*invalid value "cram-md5" in .*bad\.conf:\d+/,
	'proxy_smtp_auth cram-md5 refused');


###############################################################################

sub login {
	my ($port, $user) = @_;
	my $s = Test::Nginx::SMTP->new(PeerAddr => '127.0.0.1:' . port($port));
	$s->read();
	$s->send('EHLO client.example');
	1 while ($s->read() // '') =~ /^250-/;
	$s->send('AUTH PLAIN ' . encode_base64("\0$user\0secret", ''));
	return $s;
}

# what the backend was sent after its EHLO reply for a user, '|'-joined
sub backend_log {
	my ($user) = @_;
	$s->send("MAIL FROM:<$user>");
	$s->read();
	for (1 .. 50) {
		last if -e "$d/backend-$user";
		select undef, undef, undef, 0.1;
	}
	return join '|', split /\r\n/, $t->read_file("backend-$user");
}

sub auth_daemon {
	my $server = IO::Socket::INET->new(Proto => 'tcp',
		LocalAddr => '127.0.0.1:' . port(8081), Listen => 16,
		ReuseAddr => 1) or die "auth listen: $!";
	while (my $c = $server->accept()) {
		my $req = '';
		while (defined(my $l = <$c>)) {
			$req .= $l;
			last if $l eq CRLF;
		}
		# waitforsocket connects and sends nothing
		my ($user) = $req =~ /^Auth-User: (\S+)\r$/m or next;
		my $port = $user eq 'erin' ? port(8083) : port(8082);
		my $choice = $user =~ /-(login|off)$/ ? "Auth-SMTP-Auth: $1" . CRLF : '';
		print $c "HTTP/1.0 200 OK" . CRLF . "Auth-Status: OK" . CRLF
			. "Auth-Server: 127.0.0.1" . CRLF . "Auth-Port: $port" . CRLF
			. "Auth-User: $user" . CRLF . $choice . CRLF;
		close $c;
	}
}

# An SMTP backend; with $login it takes AUTH LOGIN and AUTH PLAIN, without
# it refuses AUTH LOGIN. After MAIL FROM it keeps what it got since EHLO in
# backend-<user>: the user is the MAIL FROM address.
sub backend {
	my ($dir, $num, $login) = @_;
	my $server = IO::Socket::INET->new(Proto => 'tcp',
		LocalAddr => '127.0.0.1:' . port($num), Listen => 16,
		ReuseAddr => 1) or die "backend listen: $!";
	while (my $c = $server->accept()) {
		$c->autoflush(1);
		print $c "220 backend ESMTP" . CRLF;
		my ($seen, $prompts) = ('', 0);
		while (defined(my $l = <$c>)) {
			if ($l =~ /^EHLO/i) {
				print $c "250 backend" . CRLF;
			} elsif ($l =~ /^AUTH LOGIN/i) {
				$seen .= $l;
				if (!$login) {
					print $c "504 5.7.4 unrecognized" . CRLF;
					next;
				}
				print $c "334 VXNlcm5hbWU6" . CRLF;
				$prompts = 2;
			} elsif ($prompts) {
				$seen .= $l;
				print $c ($prompts-- == 2 ? "334 UGFzc3dvcmQ6" : "235 ok") . CRLF;
			} elsif ($l =~ /^AUTH PLAIN/i) {
				$seen .= $l;
				print $c "235 ok" . CRLF;
			} elsif ($l =~ /^MAIL FROM:<(.*)>/i) {
				open my $fh, '>', "$dir/backend-$1" or die;
				print $fh $seen;
				close $fh;
				print $c "250 ok" . CRLF;
			} elsif ($l =~ /^QUIT/i) {
				print $c "221 bye" . CRLF;
				last;
			} else {
				print $c "250 ok" . CRLF;
			}
		}
		close $c;
	}
}

###############################################################################
