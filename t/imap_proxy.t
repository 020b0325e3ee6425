#!/usr/bin/perl

# Tests for the IMAP proxy: the backend LOGIN dialogue with literals and the
# client's tag, an untagged CAPABILITY after login reaching the client, each
# way a backend fails, proxy_pass_error_message, pass-through byte for byte,
# and the auth request an IMAP login makes.

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
use Test::Nginx::IMAP;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

local $SIG{PIPE} = 'IGNORE';

# checks of stock-version behaviour only apply to stock modules
my $stock = ($ENV{TEST_NGINX_GLOBALS} // '') !~ /ngx_mail_rs/;

my $t = Test::Nginx->new()->has(qw/mail imap/)
	->write_file_expand('nginx.conf', <<'EOF');

%%TEST_GLOBALS%%

daemon off;

events {
}

mail {
    auth_http  127.0.0.1:8081/auth;
    timeout    2s;

    server {
        listen     127.0.0.1:8143;
        protocol   imap;
    }

    server {
        listen     127.0.0.1:8145;
        protocol   imap;
        proxy_pass_error_message on;
    }
}

EOF

my $d = $t->testdir();

# daemons are forked: settle their ports first so that all agree
port($_) for 8081, 8144, 8146, 8147;

$t->run_daemon(\&auth_daemon, $d);
$t->run_daemon(\&backend, $_, $d) for 8144, 8146, 8147;
$t->run()->plan(19);

$t->waitforsocket('127.0.0.1:' . port($_)) for 8081, 8144, 8146, 8147;

###############################################################################

sub last_request {
	my @r = split /(?=^GET )/m, $t->read_file('auth.log');
	return $r[-1] // '';
}

# the dialogue, byte for byte

my $s = Test::Nginx::IMAP->new();
$s->read();
$s->send('a1 LOGIN "us er" "p\\"w"');
is($s->read(), "a1 OK backend logged in\r\n", 'logged in, the tagged OK reaches the client');
is($t->read_file('backend-8144.log'),
	"a1 LOGIN {5}\r\nus er {3}\r\np\"w\r\n", 'LOGIN sent with literals and the client tag');
my $r = last_request();
like($r, qr/^Auth-Method: plain\r\nAuth-User: us%20er\r\nAuth-Pass: p"w\r\n/m,
	'auth request for imap');
like($r, qr/^Auth-Protocol: imap\r$/m, 'auth-protocol imap');

# pass-through, byte for byte, both ways

$s->send('a2 FETCH ' . 1024 * 1024);
my $got = '';
while (defined(my $l = $s->read())) {
	last if $l eq "a2 OK fetch done\r\n";
	$got .= $l;
}
is(md5_hex($got), md5_hex(message(1024 * 1024)), 'fetch 1m byte-exact');

my $upload = message(1024 * 1024);
$s->print("a3 APPEND INBOX {" . length($upload) . "}" . CRLF);
is($s->read(), "+ go ahead\r\n", 'append continuation from the backend');
$s->print($upload . CRLF);
is($s->read(), "a3 OK " . md5_hex($upload) . "\r\n", 'append 1m byte-exact');

# an untagged CAPABILITY before the tagged OK reaches the client

SKIP: {
skip 'stock nginx before 1.27.3', 2 if $stock && !$t->has_version('1.27.3');

$s = Test::Nginx::IMAP->new();
$s->read();
$s->send('b1 LOGIN capability secret');
is($s->read(), "* CAPABILITY IMAP4rev1 MOVE IDLE\r\n", 'backend capability passed');
is($s->read(), "b1 OK backend logged in\r\n", 'then the tagged OK');

}

# AUTHENTICATE: the authenticate command's tag goes to the backend

$s = Test::Nginx::IMAP->new();
$s->read();
$s->send('c1 AUTHENTICATE PLAIN');
$s->read();
$s->send(encode_base64("\0user\0secret", ''));
is($s->read(), "c1 OK backend logged in\r\n", 'authenticate, tag on the reply');
like($t->read_file('backend-8144.log'), qr/^c1 LOGIN \{4\}\r\nuser \{6\}\r\nsecret\r\n/m,
	'authenticate tag in the backend LOGIN');

# Auth-User and Auth-Pass from the auth server are what the backend sees

$s = Test::Nginx::IMAP->new();
$s->read();
$s->send('d1 LOGIN rename x');
is($s->read(), "d1 OK backend logged in\r\n", 'renamed login');
like($t->read_file('backend-8144.log'), qr/^d1 LOGIN \{7\}\r\nrenamed \{11\}\r\nfrom-server\r\n/m,
	'Auth-User and Auth-Pass used');

# backend failures

$s = Test::Nginx::IMAP->new();
$s->read();
$s->send('e1 LOGIN refuse x');
is($s->read(), "* BAD internal server error\r\n", 'backend refusal hidden');

$s = Test::Nginx::IMAP->new(PeerAddr => '127.0.0.1:' . port(8145));
$s->read();
$s->send('e2 LOGIN refuse x');
is($s->read(), "e2 NO [AUTHENTICATIONFAILED] go away\r\n", 'backend refusal passed on');

$s = Test::Nginx::IMAP->new();
$s->read();
$s->send('e3 LOGIN badgreeting x');
is($s->read(), "* BAD internal server error\r\n", 'backend greeting not OK');

$s = Test::Nginx::IMAP->new();
$s->read();
$s->send('e4 LOGIN nocontinue x');
is($s->read(), "* BAD internal server error\r\n", 'backend refused the literal');

$s = Test::Nginx::IMAP->new();
$s->read();
$s->send('e5 LOGIN down x');
is($s->read(), "* BAD internal server error\r\n", 'backend down');

# sessions still open at shutdown make nginx 1.22 log alerts
undef $s;
$t->stop();

like($t->read_file('error.log'),
	qr/upstream sent invalid response: "NO \[AUTHENTICATIONFAILED\] go away" while reading response from upstream, client: 127\.0\.0\.1, server: 127\.0\.0\.1:\d+, login: "refuse", upstream: 127\.0\.0\.1:\d+/,
	'error logged with client, server, login, upstream');

# the harness's final checks run when $t goes; helper subs that use it
# would otherwise keep it alive past Test::More's plan check. Clients go
# first: nginx 1.22 logs an alert for a session still open at its exit.
undef $s;
undef $t;

###############################################################################

sub message {
	my ($size) = @_;
	my $line = join('', map { chr(ord('a') + $_ % 26) } 0 .. 73) . CRLF;
	my $body = $line x int($size / length($line));
	my $rest = $size - length($body);
	$body .= ('x' x ($rest - 2)) . CRLF if $rest >= 2;
	return $body;
}

sub auth_daemon {
	my ($dir) = @_;
	my $server = IO::Socket::INET->new(Proto => 'tcp',
		LocalAddr => '127.0.0.1:' . port(8081), Listen => 64,
		ReuseAddr => 1) or die "auth listen: $!";
	my %backends = (badgreeting => 8146, nocontinue => 8147, down => 8148);
	while (my $c = $server->accept()) {
		my $req = '';
		while (defined(my $l = <$c>)) {
			$req .= $l;
			last if $l eq CRLF;
		}
		open my $fh, '>>', "$dir/auth.log" or die;
		print $fh $req;
		close $fh;
		my ($user) = $req =~ /^Auth-User: (.*)\r$/m;
		my $port = port($backends{$user // ''} // 8144);
		my $extra = ($user // '') eq 'rename'
			? "Auth-User: renamed" . CRLF . "Auth-Pass: from-server" . CRLF : '';
		print $c "HTTP/1.0 200 OK" . CRLF . "Auth-Status: OK" . CRLF
			. "Auth-Server: 127.0.0.1" . CRLF . "Auth-Port: $port" . CRLF
			. $extra . CRLF;
		close $c;
	}
}

sub note_data {
	my ($dir, $num, $data) = @_;
	open my $fh, '>>', "$dir/backend-$num.log" or die;
	print $fh $data;
	close $fh;
}

sub backend {
	my ($num, $dir) = @_;
	my $server = IO::Socket::INET->new(Proto => 'tcp',
		LocalAddr => '127.0.0.1:' . port($num), Listen => 64,
		ReuseAddr => 1) or die "backend listen: $!";
	local $SIG{PIPE} = 'IGNORE';
	while (my $c = $server->accept()) {
		$c->autoflush(1);
		if ($num == 8146) {
			print $c "* BYE not today" . CRLF;
			close $c;
			next;
		}
		print $c "* OK backend ready" . CRLF;
		my $line = <$c> // next;
		note_data($dir, $num, $line);
		my ($tag, $n) = $line =~ /^(\S+) LOGIN \{(\d+)\}\r\n\z/ or next;
		if ($num == 8147) {
			print $c "$tag NO no literals here" . CRLF;
			close $c;
			next;
		}
		print $c "+ ready" . CRLF;
		read($c, my $user, $n);
		my $rest = <$c>;
		note_data($dir, $num, $user . $rest);
		my ($m) = $rest =~ /\{(\d+)\}/;
		print $c "+ ready" . CRLF;
		read($c, my $pass, $m);
		my $end = <$c>;
		note_data($dir, $num, $pass . $end);
		if ($user eq 'refuse') {
			print $c "$tag NO [AUTHENTICATIONFAILED] go away" . CRLF;
			close $c;
			next;
		}
		print $c "* CAPABILITY IMAP4rev1 MOVE IDLE" . CRLF if $user eq 'capability';
		print $c "$tag OK backend logged in" . CRLF;
		while (defined(my $l = <$c>)) {
			if ($l =~ /^(\S+) FETCH (\d+)/) {
				print $c message($2) . "$1 OK fetch done" . CRLF;
			} elsif ($l =~ /^(\S+) APPEND \S+ \{(\d+)\}/) {
				my ($t2, $len) = ($1, $2);
				print $c "+ go ahead" . CRLF;
				read($c, my $data, $len);
				<$c>;
				print $c "$t2 OK " . md5_hex($data) . CRLF;
			} elsif ($l =~ /^(\S+) LOGOUT/) {
				print $c "* BYE" . CRLF . "$1 OK bye" . CRLF;
				last;
			}
		}
		close $c;
	}
}

###############################################################################
