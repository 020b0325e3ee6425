#!/usr/bin/perl

# Tests for proxy_pass_client_info (ours; stock nginx has no such
# directive): before logging in, IMAP backends get an ID command with the
# client's address and port, the address it connected to and the session's
# number, and POP3 backends whose greeting offers [XCLIENT] get XCLIENT
# ADDR= PORT=. Off by default; a backend without ID still takes the login.

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
use Test::Nginx::POP3;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

local $SIG{PIPE} = 'IGNORE';

plan(skip_all => 'proxy_pass_client_info is ours')
	if ($ENV{TEST_NGINX_GLOBALS} // '') !~ /ngx_mail_rs/;

# the client comes from 127.0.0.2, so its address differs from nginx's own
plan(skip_all => 'no 127.0.0.2 to connect from')
	unless IO::Socket::INET->new(LocalAddr => '127.0.0.2', Proto => 'tcp');

my $t = Test::Nginx->new()->has(qw/mail imap pop3/)
	->write_file_expand('nginx.conf', <<'EOF');

%%TEST_GLOBALS%%

daemon off;

events {
}

mail {
    auth_http  127.0.0.1:8081/auth;
    proxy_pass_client_info on;

    server {
        listen     127.0.0.1:8143;
        protocol   imap;
    }

    server {
        listen     127.0.0.1:8110;
        protocol   pop3;
    }

    server {
        listen     127.0.0.1:8111;
        protocol   pop3;
        proxy_pass_client_info off;
    }
}

EOF

my $d = $t->testdir();

port($_) for 8081, 8144, 8112, 8113, 8145;

$t->run_daemon(\&auth_daemon);
$t->run_daemon(\&imap_backend, $d, 8144, 1);
$t->run_daemon(\&imap_backend, $d, 8145, 0);
$t->run_daemon(\&pop3_backend, $d, 8112, 1);
$t->run_daemon(\&pop3_backend, $d, 8113, 0);
$t->run()->plan(9);

$t->waitforsocket('127.0.0.1:' . port($_)) for 8081, 8144, 8145, 8112, 8113;

###############################################################################

# IMAP: ID before LOGIN, with the backend's ID reply read to its tagged OK

my $s = Test::Nginx::IMAP->new(LocalAddr => '127.0.0.2');
$s->read();
$s->send('a1 LOGIN alice secret');
is($s->read(), "a1 OK logged in\r\n", 'imap login after ID');
my $port = $s->{sock}->sockport();
my ($id, $login) = split /\n/, $t->read_file('imap-alice');
like($id, qr/^a1 ID \("x-originating-ip" "127\.0\.0\.2" "x-originating-port" "$port" "x-connected-ip" "127\.0\.0\.1" "x-connected-port" "${\ port(8143)}" "x-session-id" "\d+"\)\r$/,
	'ID names the client, its port, the address it used, the session');
like($login, qr/^a1 LOGIN \{5\}\r$/, 'then LOGIN');

# a backend that does not know ID

$s = Test::Nginx::IMAP->new(LocalAddr => '127.0.0.2');
$s->read();
$s->send('b1 LOGIN noid secret');
is($s->read(), "b1 OK logged in\r\n", 'login where ID is refused');

# POP3: XCLIENT only where the greeting offers it

$s = Test::Nginx::POP3->new(LocalAddr => '127.0.0.2');
$s->read();
$s->send('USER bob');
$s->read();
$s->send('PASS secret');
$s->check(qr/^\+OK logged in/, 'pop3 login after XCLIENT');
$port = $s->{sock}->sockport();
is((split /\n/, $t->read_file('pop3-bob'))[0],
	"XCLIENT ADDR=127.0.0.2 PORT=$port\r", 'XCLIENT with address and port');

$s = Test::Nginx::POP3->new(LocalAddr => '127.0.0.2');
$s->read();
$s->send('USER plain');
$s->read();
$s->send('PASS secret');
$s->read();
like($t->read_file('pop3-plain'), qr/\AUSER plain\r\n/,
	'no XCLIENT where the greeting does not offer it');

# off: nothing before USER even where offered

$s = Test::Nginx::POP3->new(PeerAddr => '127.0.0.1:' . port(8111),
	LocalAddr => '127.0.0.2');
$s->read();
$s->send('USER carol');
$s->read();
$s->send('PASS secret');
$s->check(qr/^\+OK logged in/, 'pop3 login with proxy_pass_client_info off');
like($t->read_file('pop3-carol'), qr/\AUSER carol\r\n/, 'off sends nothing');

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
		# waitforsocket connects and sends nothing
		my ($user) = $req =~ /^Auth-User: (\S+)\r$/m or next;
		my $port = $req =~ /Auth-Protocol: imap/
			? port($user eq 'noid' ? 8145 : 8144)
			: port($user eq 'plain' ? 8113 : 8112);
		print $c "HTTP/1.0 200 OK" . CRLF . "Auth-Status: OK" . CRLF
			. "Auth-Server: 127.0.0.1" . CRLF . "Auth-Port: $port" . CRLF
			. CRLF;
		close $c;
	}
}

# writes what came before the login's end to <proto>-<user>
sub keep {
	my ($dir, $name, $lines) = @_;
	open my $fh, '>', "$dir/$name" or die;
	print $fh $lines;
	close $fh;
}

sub imap_backend {
	my ($dir, $num, $knows_id) = @_;
	my $server = IO::Socket::INET->new(Proto => 'tcp',
		LocalAddr => '127.0.0.1:' . port($num), Listen => 16,
		ReuseAddr => 1) or die "backend listen: $!";
	while (my $c = $server->accept()) {
		$c->autoflush(1);
		print $c "* OK backend ready" . CRLF;
		my $seen = '';
		while (defined(my $l = <$c>)) {
			$seen .= $l;
			if ($l =~ /^(\S+) ID /) {
				print $c $knows_id
					? "* ID (\"name\" \"backend\")" . CRLF . "$1 OK ID completed" . CRLF
					: "$1 BAD unknown command" . CRLF;
			} elsif ($l =~ /^(\S+) LOGIN \{(\d+)\}/) {
				my $tag = $1;
				print $c "+ go" . CRLF;
				$c->read(my $user, $2);
				<$c>;
				print $c "+ go" . CRLF;
				<$c>;
				keep($dir, "imap-$user", $seen);
				print $c "$tag OK logged in" . CRLF;
			}
		}
		close $c;
	}
}

sub pop3_backend {
	my ($dir, $num, $offers) = @_;
	my $server = IO::Socket::INET->new(Proto => 'tcp',
		LocalAddr => '127.0.0.1:' . port($num), Listen => 16,
		ReuseAddr => 1) or die "backend listen: $!";
	while (my $c = $server->accept()) {
		$c->autoflush(1);
		print $c ($offers ? "+OK [XCLIENT] ready" : "+OK ready") . CRLF;
		my ($seen, $user) = ('', '');
		while (defined(my $l = <$c>)) {
			$seen .= $l;
			$user = $1 if $l =~ /^USER (\S+)/;
			if ($l =~ /^PASS/) {
				keep($dir, "pop3-$user", $seen);
				print $c "+OK logged in" . CRLF;
			} else {
				print $c "+OK" . CRLF;
			}
		}
		close $c;
	}
}

###############################################################################
