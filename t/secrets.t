#!/usr/bin/perl

# Tests that a logged-in session leaves no password in the worker's memory:
# POP3 (USER/PASS), IMAP (LOGIN with a literal) and SMTP (AUTH PLAIN)
# sessions log in with marked passwords and stay proxied; a core dump of
# the worker (gdb's gcore) must not hold any marker, raw or base64. Stock
# nginx keeps them in its buffers and pools, so this is skipped there.

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

my $stock = ($ENV{TEST_NGINX_GLOBALS} // '') !~ /ngx_mail_rs/;
plan(skip_all => 'hardening beyond stock nginx') if $stock;

# under valgrind (scripts/memcheck.sh) the dump would be valgrind's
my $binary = $ENV{TEST_NGINX_BINARY} // '';
plan(skip_all => 'nginx runs under valgrind')
	if -T $binary && do { local (@ARGV, $/) = $binary; <> =~ /valgrind/ };

my $t = Test::Nginx->new()->has(qw/mail pop3 imap smtp/)->has_daemon('gcore')
	->write_file_expand('nginx.conf', <<'EOF');

%%TEST_GLOBALS%%

daemon off;

events {
}

mail {
    auth_http  127.0.0.1:8081/auth;

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

port($_) for 8081 .. 8084;

$t->run_daemon(\&auth_daemon);
$t->run_daemon(\&backend, $_) for qw/pop3 imap smtp/;
$t->run()->plan(5);

$t->waitforsocket('127.0.0.1:' . port($_)) for 8081 .. 8084;

###############################################################################

# One login of each kind first: the first call of each library function
# goes through the dynamic linker's lazy binding, which saves the vector
# registers on the stack (_dl_runtime_resolve_xsavec), and a register may
# hold a piece of a password just copied. That happens once per worker and
# is not a buffer of ours (ROBUSTNESS.md, "Secrets").
for my $warm (1) {
	my $p = Test::Nginx::POP3->new();
	$p->read();
	$p->send('USER warm@example.com');
	$p->read();
	$p->send('PASS warmup');
	$p->read();
	my $i = Test::Nginx::IMAP->new();
	$i->read();
	$i->send('w1 LOGIN warm@example.com {6}');
	$i->read();
	$i->send('warmup');
	$i->read();
	my $m = Test::Nginx::SMTP->new();
	$m->read();
	$m->send('AUTH PLAIN ' . encode_base64("\0warm\@example.com\0warmup", ''));
	$m->read();
}

my %marker = map { $_ => "${_}Marker7f3a9c" } qw/pop3 imap smtp/;

my $pop3 = Test::Nginx::POP3->new();
$pop3->read();
$pop3->send('USER test@example.com');
$pop3->read();
$pop3->send("PASS $marker{pop3}");
$pop3->check(qr/^\+OK backend in/, 'pop3 logged in');

my $imap = Test::Nginx::IMAP->new();
$imap->read();
$imap->send('a1 LOGIN test@example.com {' . length($marker{imap}) . '}');
$imap->read();
$imap->send($marker{imap});
$imap->check(qr/^a1 OK backend in/, 'imap logged in');

my $smtp_plain = encode_base64("\0test\@example.com\0$marker{smtp}", '');
my $smtp = Test::Nginx::SMTP->new();
$smtp->read();
$smtp->send("AUTH PLAIN $smtp_plain");
$smtp->authok('smtp logged in');

# what the proxy had of the passwords is gone by now; the sessions stay
my $dump = $t->testdir() . '/worker';
my $pid = worker_pid();
system("gcore -o $dump $pid >/dev/null 2>&1");
my $core = do { local (@ARGV, $/) = "$dump.$pid"; <> // '' };
unlink "$dump.$pid";

ok(length($core) > 100000, 'worker dumped');
my @found = grep { index($core, $_) >= 0 }
	(values %marker, $smtp_plain, encode_base64($marker{pop3}, ''));
is("@found", '', 'no password left in the worker');

undef $_ for $pop3, $imap, $smtp;
undef $t;

###############################################################################

sub worker_pid {
	my $master = $t->read_file('nginx.pid');
	chomp $master;
	for my $stat (glob '/proc/[0-9]*/stat') {
		open my $fh, '<', $stat or next;
		my $line = <$fh> // '';
		return $1 if $line =~ /^(\d+) \(.*\) \S+ $master /;
	}
	return 0;
}

sub auth_daemon {
	my $server = IO::Socket::INET->new(Proto => 'tcp',
		LocalAddr => '127.0.0.1:' . port(8081), Listen => 64,
		ReuseAddr => 1) or die "auth listen: $!";
	my %backend = (pop3 => 8082, imap => 8083, smtp => 8084);
	while (my $c = $server->accept()) {
		my $proto = 'pop3';
		while (defined(my $l = <$c>)) {
			$proto = $1 if $l =~ /^Auth-Protocol: (\w+)/;
			last if $l eq CRLF;
		}
		print $c "HTTP/1.0 200 OK" . CRLF . "Auth-Status: OK" . CRLF
			. "Auth-Server: 127.0.0.1" . CRLF
			. "Auth-Port: " . port($backend{$proto}) . CRLF . CRLF;
		close $c;
	}
}

# A backend of one protocol that takes any login; one process per session.
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
