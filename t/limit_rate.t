#!/usr/bin/perl

# Tests for limit_rate and limit_rate_after (freenginx 1.29, ours only) on
# relayed POP3 sessions: 200 KB at 50 KB/s takes its time (bounds loose
# enough never to be a timed flake) and arrives byte-exact; with
# limit_rate_after the first part goes at once and the rest at the rate;
# the client's uploads are not paced; without limit_rate nothing is.

###############################################################################

use warnings;
use strict;

use Test::More;

use Digest::MD5 qw/ md5_hex /;
use IO::Socket::INET;
use Socket qw/ CRLF /;
use Time::HiRes qw/ time /;

BEGIN { use FindBin; chdir($FindBin::Bin); }

use lib 'lib';
use Test::Nginx;
use Test::Nginx::POP3;

###############################################################################

select STDERR; $| = 1;
select STDOUT; $| = 1;

local $SIG{PIPE} = 'IGNORE';

my $stock = ($ENV{TEST_NGINX_GLOBALS} // '') !~ /ngx_mail_rs/;
plan(skip_all => 'limit_rate in mail is freenginx 1.29 (ours); stock 1.28 has none')
	if $stock;

my $t = Test::Nginx->new()->has(qw/mail pop3/)
	->write_file_expand('nginx.conf', <<'EOF');

%%TEST_GLOBALS%%

daemon off;

events {
}

mail {
    auth_http  127.0.0.1:8081/auth;

    limit_rate 50k;

    server {
        listen     127.0.0.1:8110;
        protocol   pop3;
    }

    server {
        listen     127.0.0.1:8112;
        protocol   pop3;
        limit_rate 20k;
        limit_rate_after 190k;
    }

    server {
        listen     127.0.0.1:8113;
        protocol   pop3;
        limit_rate 0;
    }
}

EOF

port($_) for 8081, 8111;

$t->run_daemon(\&auth_daemon);
$t->run_daemon(\&backend);
$t->run()->plan(10);

$t->waitforsocket('127.0.0.1:' . port($_)) for 8081, 8111;

###############################################################################

sub login {
	my ($port) = @_;
	my $s = Test::Nginx::POP3->new(PeerAddr => '127.0.0.1:' . port($port));
	$s->read();
	$s->send('USER test');
	$s->read();
	$s->send('PASS secret');
	$s->read();
	return $s;
}

# RETR of $size bytes: the seconds it took and the bytes
sub retr {
	my ($s, $size) = @_;
	my $start = time();
	$s->send("RETR $size");
	$s->read();
	my $got = '';
	while (defined(my $l = $s->getline())) {
		last if $l eq ".\r\n";
		$got .= $l;
	}
	return (time() - $start, $got);
}

my $size = 200 * 1024;

# 50 KB at once, then 25 KB every half second: 3 s in theory
my $s = login(8110);
my ($took, $got) = retr($s, $size);
note(sprintf('200 KB at 50 KB/s: %.2f s', $took));
cmp_ok($took, '>=', 2, 'limit_rate: 200 KB at 50 KB/s not under 2 s');
cmp_ok($took, '<', 30, 'limit_rate: and it flows');
is(md5_hex($got), md5_hex(message($size)), 'limit_rate: byte-exact');

# the client's side is not paced: 1 MiB up, echoed as its digest
my $up = message(1024 * 1024);
my $start = time();
$s->print("XUP " . length($up) . CRLF . $up);
is($s->read(), '+OK ' . md5_hex($up) . CRLF, 'upload byte-exact');
cmp_ok(time() - $start, '<', 10, 'upload not paced');

# limit_rate_after: 200 KB (rate + after) at once, then the rate
$s = login(8112);
($took, $got) = retr($s, $size);
note(sprintf('200 KB with limit_rate_after 190k: %.2f s', $took));
cmp_ok($took, '<', 2, 'limit_rate_after: the burst goes at once');
is(md5_hex($got), md5_hex(message($size)), 'limit_rate_after: byte-exact');
($took) = retr($s, 50 * 1024);
note(sprintf('then 50 KB at 20 KB/s: %.2f s', $took));
cmp_ok($took, '>=', 1.5, 'then 50 KB at 20 KB/s not under 1.5 s');

# limit_rate 0: nothing paced
$s = login(8113);
($took, $got) = retr($s, 4 * $size);
note(sprintf('800 KB unpaced: %.2f s', $took));
cmp_ok($took, '<', 4, 'limit_rate 0: 800 KB at once');
is(md5_hex($got), md5_hex(message(4 * $size)), 'limit_rate 0: byte-exact');

###############################################################################

# $n bytes of lines ending in CRLF, none a lone "."
sub message {
	my ($n) = @_;
	my $line = ('0123456789abcdef' x 4) . CRLF;
	my $m = $line x int($n / length($line));
	$m .= 'x' x ($n - length($m) - 2) . CRLF if length($m) < $n;
	return $m;
}

sub auth_daemon {
	my $server = IO::Socket::INET->new(Proto => 'tcp',
		LocalAddr => '127.0.0.1:' . port(8081), Listen => 16,
		ReuseAddr => 1) or die "auth listen: $!";
	while (my $c = $server->accept()) {
		while (defined(my $l = <$c>)) {
			last if $l eq CRLF;
		}
		print $c "HTTP/1.0 200 OK" . CRLF
			. "Auth-Status: OK" . CRLF
			. "Auth-Server: 127.0.0.1" . CRLF
			. "Auth-Port: " . port(8111) . CRLF . CRLF;
		close $c;
	}
}

# A forking POP3 backend: "RETR n" sends n bytes, "XUP n" reads n bytes and
# answers with their MD5.
sub backend {
	my $server = IO::Socket::INET->new(Proto => 'tcp',
		LocalAddr => '127.0.0.1:' . port(8111), Listen => 16,
		ReuseAddr => 1) or die "listen: $!";
	local $SIG{PIPE} = 'IGNORE';
	local $SIG{CHLD} = 'IGNORE';
	while (my $c = $server->accept()) {
		my $pid = fork();
		next if !defined $pid;
		if ($pid) {
			close $c;
			next;
		}
		$c->autoflush(1);
		print $c '+OK ready' . CRLF;
		while (defined(my $l = <$c>)) {
			if ($l =~ /^RETR (\d+)/) {
				print $c "+OK $1 octets" . CRLF . message($1) . '.' . CRLF;
			} elsif ($l =~ /^XUP (\d+)/) {
				read($c, my $data, $1);
				print $c '+OK ' . md5_hex($data) . CRLF;
			} else {
				print $c '+OK' . CRLF;
			}
		}
		close $c;
		POSIX::_exit(0);
	}
}

###############################################################################
