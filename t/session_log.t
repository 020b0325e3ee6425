#!/usr/bin/perl

# Tests for access_log in mail{}: one line per finished session, in the
# mail (key=value) and json formats, checked field by field: POP3 and IMAP
# logins that are proxied, refused logins with the auth server's reason, a
# client that leaves before login, an escaped login, buffer= with flush=,
# access_log off; and the password never appears in any log.

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
use Test::Nginx::IMAP;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

local $SIG{PIPE} = 'IGNORE';

my $stock = ($ENV{TEST_NGINX_GLOBALS} // '') !~ /ngx_mail_rs/;
plan(skip_all => 'access_log in mail{} is ours') if $stock;
eval { require JSON::PP; 1 } or plan(skip_all => 'JSON::PP not installed');

my $t = Test::Nginx->new()->has(qw/mail pop3 imap http rewrite/)
	->write_file_expand('nginx.conf', <<'EOF');

%%TEST_GLOBALS%%

daemon off;

events {
}

mail {
    auth_http  http://127.0.0.1:8080/mail/auth;
    access_log %%TESTDIR%%/mail.log;

    server {
        listen     127.0.0.1:8110;
        protocol   pop3;
    }

    server {
        listen     127.0.0.1:8143;
        protocol   imap;
        access_log %%TESTDIR%%/json.log json;
    }

    server {
        listen     127.0.0.1:8112;
        protocol   pop3;
        access_log %%TESTDIR%%/buffered.log mail buffer=64k flush=1s;
    }

    server {
        listen     127.0.0.1:8113;
        protocol   pop3;
        access_log off;
    }

    server {
        listen     127.0.0.1:8116;
        protocol   pop3;
        access_log %%TESTDIR%%/reopened.log mail buffer=64k;
    }

    server {
        listen     127.0.0.1:8114;
        protocol   pop3;
        access_log %%TESTDIR%%/failures.log;
        auth_http  127.0.0.1:8083/down;
    }

    server {
        listen     127.0.0.1:8115;
        protocol   pop3;
        access_log %%TESTDIR%%/failures.log;
        auth_http  127.0.0.1:8084/stall;
        auth_http_timeout 500ms;
    }
}

http {
    %%TEST_GLOBALS_HTTP%%

    # the auth server's own log sees the password; the mail side's must not
    error_log %%TESTDIR%%/auth_server.log debug;

    server {
        listen       127.0.0.1:8080;
        server_name  localhost;

        location = /mail/auth {
            set $reply "Invalid login or password";
            if ($http_auth_pass = "Pa55-w0rd") {
                set $reply OK;
            }
            set $port %%PORT_8111%%;
            if ($http_auth_protocol = imap) {
                set $port %%PORT_8144%%;
            }
            add_header Auth-Status $reply;
            add_header Auth-Server 127.0.0.1;
            add_header Auth-Port $port;
            add_header Auth-Pass secret;
            return 204;
        }
    }
}

EOF

$t->run_daemon(\&Test::Nginx::POP3::pop3_test_daemon);
$t->run_daemon(\&Test::Nginx::IMAP::imap_test_daemon);
$t->run_daemon(\&stall_daemon);
port(8083);
$t->run()->plan(42);

$t->waitforsocket('127.0.0.1:' . port(8111));
$t->waitforsocket('127.0.0.1:' . port(8144));
$t->waitforsocket('127.0.0.1:' . port(8084));

###############################################################################

# the lines of a log, once it has `$n` of them
sub lines {
	my ($file, $n) = @_;
	my @l;
	for (1 .. 50) {
		@l = split /\n/, $t->read_file($file) if -e $t->testdir() . "/$file";
		last if @l >= $n;
		select undef, undef, undef, 0.1;
	}
	return @l;
}

# a mail-format line as a hash (quoted values unescaped)
sub fields {
	my ($line) = @_;
	my %f;
	while ($line =~ /\G(\w+)=("(?:[^"\\]|\\.)*"|\S+) ?/gc) {
		my ($k, $v) = ($1, $2);
		if ($v =~ s/^"(.*)"$/$1/s) {
			$v =~ s/\\x([0-9A-F]{2})/chr(hex($1))/ge;
			$v =~ s/\\(["\\])/$1/g;
		}
		$f{$k} = $v;
	}
	return \%f;
}

# POP3: a login that is proxied, then QUIT

my $s = Test::Nginx::POP3->new();
$s->read();
$s->send('USER test@example.com');
$s->read();
$s->send('PASS Pa55-w0rd');
$s->ok('pop3 logged in');
$s->send('QUIT');
$s->read();
undef $s;

my @l = lines('mail.log', 1);
my $f = fields($l[0] // '');
my @names = qw/ time client client_port server server_port protocol tls cipher
	login auth_method auth auth_reason auth_time backend backend_tls
	bytes_to_backend bytes_to_client duration reason /;
is(join(' ', map { /^(\w+)=/ } split / (?=\w+=)/, $l[0] // ''),
	join(' ', @names), 'mail: fields in order');
like($f->{time}, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d$/, 'mail: time');
is($f->{client}, '127.0.0.1', 'mail: client');
like($f->{client_port}, qr/^\d+$/, 'mail: client port');
is("$f->{server}:$f->{server_port}", '127.0.0.1:' . port(8110), 'mail: server');
is($f->{protocol}, 'pop3', 'mail: protocol');
is("$f->{tls} $f->{cipher}", '- -', 'mail: no tls');
is($f->{login}, 'test@example.com', 'mail: login');
is("$f->{auth_method} $f->{auth} $f->{auth_reason}", 'plain ok -', 'mail: auth ok');
like($f->{auth_time}, qr/^\d+\.\d{3}$/, 'mail: auth time');
is($f->{backend}, '127.0.0.1:' . port(8111), 'mail: backend');
is($f->{backend_tls}, 'off', 'mail: backend tls');
# relayed: the backend's "+OK pass ok\r\n" and "+OK quit ok\r\n" back,
# "QUIT\r\n" to it
is("$f->{bytes_to_backend} $f->{bytes_to_client}", '6 26', 'mail: bytes');
like($f->{duration}, qr/^\d+\.\d{3}$/, 'mail: duration');
like($f->{reason}, qr/^(backend|client)_closed$/, 'mail: reason');

# POP3: refused, with the auth server's reason

$s = Test::Nginx::POP3->new();
$s->read();
$s->send('USER "odd user"=x');
$s->read();
$s->send('PASS wrong-Pa55');
$s->read();
undef $s;

@l = lines('mail.log', 2);
$f = fields($l[1] // '');
is($f->{login}, '"odd user"=x', 'mail: login escaped');
like($l[1] // '', qr/ login="\\"odd user\\"=x" /, 'mail: login quoted');
is("$f->{auth} $f->{auth_reason}", 'refused Invalid login or password',
	'mail: refused with reason');
is("$f->{backend} $f->{bytes_to_backend} $f->{reason}", '- 0 auth_refused',
	'mail: refused session');

# POP3: a client leaving before login

$s = Test::Nginx::POP3->new();
$s->read();
undef $s;

@l = lines('mail.log', 3);
$f = fields($l[2] // '');
is("$f->{login} $f->{auth_method} $f->{auth} $f->{auth_time} $f->{reason}",
	'- - - - client_closed', 'mail: left before login');

# IMAP, json: proxied, then refused

$s = Test::Nginx::IMAP->new();
$s->read();
$s->send('1 LOGIN test@example.com Pa55-w0rd');
$s->ok('imap logged in');
$s->send('2 LOGOUT');
$s->read();
undef $s;

$s = Test::Nginx::IMAP->new();
$s->read();
$s->send("1 LOGIN \"\xc3\xa9t\\\"\" nope");
$s->read();
undef $s;

@l = lines('json.log', 2);
my @j = map { eval { JSON::PP->new->utf8->decode($_) } } @l;
is(scalar @j, 2, 'json: valid lines');
is_deeply([ sort keys %{$j[0] // {}} ], [ sort @names ], 'json: fields');
is($j[0]{protocol}, 'imap', 'json: protocol');
is($j[0]{login}, 'test@example.com', 'json: login');
is($j[0]{auth}, 'ok', 'json: auth');
is($j[0]{backend}, '127.0.0.1:' . port(8144), 'json: backend');
is($j[0]{backend_tls}, JSON::PP::false(), 'json: backend tls');
# "2 LOGOUT\r\n" relayed; "1 OK login ok\r\n2 OK logout ok\r\n" back
is("$j[0]{bytes_to_backend} $j[0]{bytes_to_client}", '10 31', 'json: bytes');
is($j[0]{server_port}, port(8143), 'json: server port is a number');
is($j[1]{login}, "\xe9t\"", 'json: login escaped');
is($j[1]{auth_reason}, 'Invalid login or password', 'json: reason');
is($j[1]{tls}, undef, 'json: no tls is null');

# buffer= holds the line until flush=

$s = Test::Nginx::POP3->new(PeerAddr => '127.0.0.1:' . port(8112));
$s->read();
$s->send('QUIT');
$s->read();
undef $s;
select undef, undef, undef, 0.3;
is(-s $t->testdir() . '/buffered.log', 0, 'buffered: not yet');
@l = lines('buffered.log', 1);
like($l[0] // '', qr/ reason=quit$/, 'buffered: flushed');

# buffer= without flush=: written at a reopen (USR1), which flushes first

$s = Test::Nginx::POP3->new(PeerAddr => '127.0.0.1:' . port(8116));
$s->read();
$s->send('QUIT');
$s->read();
undef $s;
select undef, undef, undef, 0.3;
is(-s $t->testdir() . '/reopened.log', 0, 'buffered without flush: not yet');
kill 'USR1', $t->read_file('nginx.pid') =~ /(\d+)/;
@l = lines('reopened.log', 1);
like($l[0] // '', qr/ server_port=\Q${\ port(8116)}\E .* reason=quit$/,
	'written at reopen');

# access_log off

$s = Test::Nginx::POP3->new(PeerAddr => '127.0.0.1:' . port(8113));
$s->read();
$s->send('QUIT');
$s->read();
undef $s;
select undef, undef, undef, 0.3;
is(scalar(() = lines('mail.log', 0)), 3, 'off: nothing logged');

# the auth server down, and not answering

for my $port (8114, 8115) {
	$s = Test::Nginx::POP3->new(PeerAddr => '127.0.0.1:' . port($port));
	$s->read();
	$s->send('USER test@example.com');
	$s->read();
	$s->send('PASS Pa55-w0rd');
	$s->read();
	undef $s;
	lines('failures.log', $port == 8114 ? 1 : 2);
}
@l = map { fields($_) } lines('failures.log', 2);
is(join(' ', map { "$_->{auth} $_->{reason}" } @l), 'error error timeout error',
	'auth server down: error; silent: timeout');
like($l[1]{auth_time} // '', qr/^0\.[5-9]\d\d$/, 'timeout after auth_http_timeout');

$t->stop();

my $all = join '', map { $t->read_file($_) }
	qw/ mail.log json.log buffered.log failures.log error.log /;
unlike($all, qr/Pa55|wrong-Pa|secret/, 'no password in any log');

###############################################################################

# an auth server that accepts and never answers
sub stall_daemon {
	my $server = IO::Socket::INET->new(Proto => 'tcp',
		LocalAddr => '127.0.0.1:' . port(8084), Listen => 16,
		ReuseAddr => 1) or die "listen: $!";
	my @held;
	while (my $c = $server->accept()) {
		push @held, $c;
	}
}

###############################################################################
