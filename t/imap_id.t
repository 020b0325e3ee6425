#!/usr/bin/perl

# Tests for IMAP ID (RFC 2971) before login, beyond stock nginx (which
# answers BAD): the proxy answers `* ID NIL` or the `imap_id` list, never
# counts it as an error and never forwards the client's list; a list that
# is not RFC 2971's is a syntax error; ID is advertised only where
# imap_capabilities lists it.

###############################################################################

use warnings;
use strict;

use Test::More;

use IO::Socket::INET;
use Socket qw/ CRLF /;

BEGIN { use FindBin; chdir($FindBin::Bin); }

use lib 'lib';
use Test::Nginx;
use Test::Nginx::IMAP;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

local $SIG{PIPE} = 'IGNORE';

plan(skip_all => 'stock nginx answers ID with BAD')
	if ($ENV{TEST_NGINX_GLOBALS} // '') !~ /ngx_mail_rs/;

my $t = Test::Nginx->new()->has(qw/mail imap/)
	->write_file_expand('nginx.conf', <<'EOF');

%%TEST_GLOBALS%%

daemon off;

events {
}

mail {
    auth_http  127.0.0.1:8081/auth;
    max_errors 2;

    server {
        listen     127.0.0.1:8143;
        protocol   imap;
    }

    server {
        listen     127.0.0.1:8145;
        protocol   imap;
        imap_capabilities IMAP4rev1 ID;
        imap_id    name "ngx-mail-rs" vendor "Example \"Mail\"";
    }
}

EOF

my $d = $t->testdir();

port($_) for 8081, 8144;

$t->run_daemon(\&auth_daemon);
$t->run_daemon(\&backend, $d);
$t->run()->plan(11);

$t->waitforsocket('127.0.0.1:' . port($_)) for 8081, 8144;

###############################################################################

my $s = Test::Nginx::IMAP->new();
$s->read();
$s->send('a1 CAPABILITY');
unlike($s->read(), qr/\bID\b/, 'ID not advertised by default');
$s->read();

# three IDs with max_errors 2: none is an error

$s->send('a2 ID ("name" "Thunderbird" "version" "115.0")');
is($s->read(), "* ID NIL\r\n", 'ID answered with NIL');
is($s->read(), "a2 OK completed\r\n", 'and completed');
$s->send("a$_ ID NIL") for 3 .. 4;
$s->read() for 1 .. 4;
$s->send('a5 LOGIN alice secret');
is($s->read(), "a5 OK logged in\r\n", 'login after three IDs');
is($t->read_file('backend'), "a5 LOGIN {5}\r\nalice {6}\r\nsecret\r\n",
	'the client\'s ID never reaches the backend');

# a list that is not RFC 2971's

$s = Test::Nginx::IMAP->new();
$s->read();
$s->send('b1 ID ("name")');
is($s->read(), "b1 BAD invalid command\r\n", 'odd list refused');
$s->send('b2 ID');
is($s->read(), "b2 BAD invalid command\r\n", 'ID without a list refused');
ok($s->eof(), 'counted toward max_errors');

# imap_id and the capability

$s = Test::Nginx::IMAP->new(PeerAddr => '127.0.0.1:' . port(8145));
$s->read();
$s->send('c1 CAPABILITY');
like($s->read(), qr/^\* CAPABILITY IMAP4rev1 ID AUTH=PLAIN\r$/,
	'ID advertised where listed');
$s->read();
$s->send('c2 ID NIL');
is($s->read(), "* ID (\"name\" \"ngx-mail-rs\" \"vendor\" \"Example \\\"Mail\\\"\")\r\n",
	'imap_id list');

# a real client: Python's imaplib sends ID through its generic command

SKIP: {
skip 'no python3', 1 unless `python3 -c 'print(1)' 2>/dev/null`;
my $port = port(8145);
my $out = `python3 -c '
import imaplib
m = imaplib.IMAP4("127.0.0.1", $port)
typ, data = m.xatom("ID", "(\\"name\\" \\"imaplib\\")")
print(typ, m.untagged_responses.get("ID"))
' 2>&1`;
like($out, qr/^OK \[b'\("name" "ngx-mail-rs" "vendor" "Example \\\\"Mail\\\\""\)'\]/,
	'imaplib gets the ID answer');
}

###############################################################################

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
		print $c "HTTP/1.0 200 OK" . CRLF . "Auth-Status: OK" . CRLF
			. "Auth-Server: 127.0.0.1" . CRLF
			. "Auth-Port: " . port(8144) . CRLF . CRLF;
		close $c;
	}
}

# An IMAP backend that keeps every byte of the login in "backend".
sub backend {
	my ($dir) = @_;
	my $server = IO::Socket::INET->new(Proto => 'tcp',
		LocalAddr => '127.0.0.1:' . port(8144), Listen => 16,
		ReuseAddr => 1) or die "backend listen: $!";
	while (my $c = $server->accept()) {
		$c->autoflush(1);
		print $c "* OK backend ready" . CRLF;
		my $l = <$c> // next;
		my ($tag, $len) = $l =~ /^(\S+) LOGIN \{(\d+)\}/ or next;
		my $seen = $l;
		print $c "+ go" . CRLF;
		$c->read(my $user, $len);
		$seen .= $user . <$c>;
		print $c "+ go" . CRLF;
		$seen .= <$c>;
		open my $fh, '>', "$dir/backend" or die;
		print $fh $seen;
		close $fh;
		print $c "$tag OK logged in" . CRLF;
		1 while <$c>;
	}
}

###############################################################################
