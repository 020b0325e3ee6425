#!/usr/bin/perl

# Tests for the ManageSieve proxy: the backend login (its capability block,
# then AUTHENTICATE "PLAIN" with the initial response, quoted or as a
# literal), Auth-User and Auth-Pass from the auth server, the backend's OK
# reaching the client, pass-through byte for byte both ways (1 MiB scripts
# up and down), and each way a backend refuses or fails, with and without
# proxy_pass_error_message; limit_conn's refusal, the access_log line and
# the metrics of sieve sessions. Served by our module only.

###############################################################################

use warnings;
use strict;

use Test::More;

use Digest::MD5 qw/ md5_hex /;
use IO::Socket::INET;
use MIME::Base64;
use Socket qw/ CRLF /;

BEGIN { use FindBin; chdir($FindBin::Bin); }

use lib 'lib';
use Test::Nginx;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

local $SIG{PIPE} = 'IGNORE';

plan(skip_all => 'sieve is served by ngx-mail-rs only')
	if ($ENV{TEST_NGINX_GLOBALS} // '') !~ /ngx_mail_rs/;
plan(skip_all => 'no Test::Nginx::Sieve in this lib')
	unless eval { require Test::Nginx::Sieve; 1 };

my $t = Test::Nginx->new()->has(qw/mail http/)
	->write_file_expand('nginx.conf', <<'EOF');

%%TEST_GLOBALS%%

daemon off;

events {
}

mail {
    auth_http  127.0.0.1:%%PORT_8081%%/auth;
    timeout    2s;
    access_log %%TESTDIR%%/mail.log;
    metrics_zone mailstats 128k;
    limit_conn_zone $remote_user zone=user:1m;

    server {
        listen     127.0.0.1:%%PORT_8190%%;
        protocol   sieve;
    }

    server {
        listen     127.0.0.1:%%PORT_8192%%;
        protocol   sieve;
        proxy_pass_error_message on;
    }

    server {
        listen     127.0.0.1:%%PORT_8193%%;
        protocol   sieve;
        limit_conn user 1;
    }
}

http {
    %%TEST_GLOBALS_HTTP%%

    server {
        listen       127.0.0.1:8080;
        server_name  localhost;

        location = /metrics {
            mail_metrics mailstats;
        }
    }
}

EOF

my $d = $t->testdir();

# daemons are forked: settle their ports first so that all agree
port($_) for 8190, 8192, 8193, 8194, 8195, 8196, 8081;

$t->run_daemon(\&auth_daemon, $d);
$t->run_daemon(\&Test::Nginx::Sieve::sieve_test_daemon, 8194, $d);
$t->run_daemon(\&Test::Nginx::Sieve::sieve_test_daemon, 8195, $d, 'bye');
$t->run()->plan(28);

$t->waitforsocket('127.0.0.1:' . port($_)) for 8194, 8195, 8081;

###############################################################################

sub client {
	my ($port) = @_;
	my $s = Test::Nginx::Sieve->new(PeerAddr => '127.0.0.1:' . port($port // 8190));
	$s->response();
	return $s;
}

sub login {
	my ($s, $user, $pass) = @_;
	my $resp = encode_base64("\0$user\0$pass", '');
	$s->print('AUTHENTICATE "PLAIN" {' . length($resp) . '+}' . CRLF . $resp . CRLF);
	return $s->read();
}

sub backend_log {
	my @lines = split /(?<=\n)/, $t->read_file('backend-8194.log');
	return \@lines;
}

# the dialogue, byte for byte: the backend's block is read to its OK, the
# login goes as PLAIN, the backend's OK (its text too) is the client's

my $s = client();
is(login($s, 'joe', 'se"cret'), 'OK "Logged in as joe:se"cret."' . CRLF,
	'logged in, the backend\'s OK reaches the client');
is(backend_log()->[-1],
	'AUTHENTICATE "PLAIN" "' . encode_base64("\0joe\0se\"cret", '') . '"' . CRLF,
	'AUTHENTICATE PLAIN to the backend');

# pass-through, byte for byte, both ways

my $script = join('', map { sprintf("# line %06d of a long script\r\n", $_) } 1 .. 33000);
$s->print('PUTSCRIPT "big" {' . length($script) . '+}' . CRLF . $script . CRLF);
is($s->read(), 'OK "Putscript completed."' . CRLF, 'putscript 1m');
$s->send('GETSCRIPT "big"');
is($s->read(), '{' . length($script) . '}' . CRLF, 'getscript literal');
my $got = '';
while (length($got) < length($script)) {
	my $l = $s->getline() // last;
	$got .= $l;
}
is(md5_hex($got), md5_hex($script), 'getscript 1m byte-exact');
is(length($got), length($script), 'getscript 1m length');
is($s->read(), CRLF, 'literal end');
is($s->read(), 'OK "Getscript completed."' . CRLF, 'getscript completed');
$s->send('SETACTIVE "big"');
is($s->read(), 'OK "Setactive completed."' . CRLF, 'setactive');
$s->send('LISTSCRIPTS');
is($s->response(), '"big" ACTIVE' . CRLF . 'OK "Listscripts completed."' . CRLF,
	'listscripts');
$s->send('LOGOUT');
is($s->read(), 'OK "Logout completed."' . CRLF, 'logout through the proxy');
ok($s->eof(), 'closed with the backend');

# Auth-User and Auth-Pass from the auth server are what the backend sees;
# a long password goes as a literal

$s = client();
is(login($s, 'rename', 'x'), 'OK "Logged in as renamed:from-server."' . CRLF,
	'Auth-User and Auth-Pass used');

$s = client();
my $long = 'p' x 1000;
is(login($s, 'joe', $long), "OK \"Logged in as joe:$long.\"" . CRLF, 'long password');
my $encoded = encode_base64("\0joe\0$long", '');
is(backend_log()->[-2] . backend_log()->[-1],
	'AUTHENTICATE "PLAIN" {' . length($encoded) . '+}' . CRLF . $encoded . CRLF,
	'a response over 1024 octets as a literal');

# backend failures

$s = client();
is(login($s, 'refuse', 'x'), 'BYE "internal server error"' . CRLF,
	'backend refusal hidden');

$s = client(8192);
is(login($s, 'refuse', 'x'), 'NO (AUTH-TOO-WEAK) "Authentication failed."' . CRLF,
	'backend refusal passed on');

$s = client();
is(login($s, 'ask', 'x'), 'BYE "internal server error"' . CRLF,
	'backend asks for more');

$s = client();
is(login($s, 'bye', 'x'), 'BYE "internal server error"' . CRLF, 'backend greets with BYE');

$s = client();
is(login($s, 'down', 'x'), 'BYE "internal server error"' . CRLF, 'backend down');

# limit_conn: a second session of the same user is refused, in ManageSieve

$s = client(8193);
is(login($s, 'joe', 'secret'), 'OK "Logged in as joe:secret."' . CRLF, 'first session');
my $s2 = client(8193);
is(login($s2, 'joe', 'secret'), 'NO (TRYLATER) "Too many connections"' . CRLF,
	'limit_conn refusal');
ok($s2->eof(), 'closed after the limit_conn refusal');
undef $s2;

# the metrics count sieve sessions under their own label

like(http_get('/metrics') // '',
	qr/^nginx_mail_auth_total\{protocol="sieve",mechanism="plain",result="ok"\} [1-9]\d*$/m,
	'metrics: sieve logins');

undef $s;
$t->stop();

# the access_log line names the protocol

my ($line) = grep { /login="?rename/ } split /\n/, $t->read_file('mail.log');
like($line // '', qr/ protocol=sieve .*auth_method=plain auth=ok /, 'access_log line');

my $log = $t->read_file('error.log');
like($log,
	qr/upstream sent invalid response: "NO \(AUTH-TOO-WEAK\) "Authentication failed\."" while reading response from upstream, client: 127\.0\.0\.1, server: 127\.0\.0\.1:\d+, login: "refuse", upstream: 127\.0\.0\.1:\d+/,
	'refusal logged with client, server, login, upstream');
like($log, qr/\[error\] .*upstream sent invalid response: "BYE "Too many connections""/,
	'backend greeting BYE logged');
like($log, qr/\[info\] .*client logged in/, 'client logged in');

# the harness's final checks run when $t goes; helper subs that use it
# would otherwise keep it alive past Test::More's plan check.
undef $s;
undef $t;

###############################################################################

sub auth_daemon {
	my ($dir) = @_;
	my $server = IO::Socket::INET->new(Proto => 'tcp',
		LocalAddr => '127.0.0.1:' . port(8081), Listen => 64,
		ReuseAddr => 1) or die "auth listen: $!";
	my %backends = (bye => 8195, down => 8196);
	while (my $c = $server->accept()) {
		my $req = '';
		while (defined(my $l = <$c>)) {
			$req .= $l;
			last if $l eq CRLF;
		}
		# the harness's probe connects and sends nothing
		next if $req eq '';
		my ($user) = $req =~ /^Auth-User: (.*)\r$/m;
		my $port = port($backends{$user // ''} // 8194);
		my $extra = ($user // '') eq 'rename'
			? "Auth-User: renamed" . CRLF . "Auth-Pass: from-server" . CRLF : '';
		print $c "HTTP/1.0 200 OK" . CRLF . "Auth-Status: OK" . CRLF
			. "Auth-Server: 127.0.0.1" . CRLF . "Auth-Port: $port" . CRLF
			. $extra . CRLF;
		close $c;
	}
}

###############################################################################
