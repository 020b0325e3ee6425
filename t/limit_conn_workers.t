#!/usr/bin/perl

# Tests for limit_conn's shared memory (ours only): with two workers, a
# session held in one worker makes the other refuse, and its end lets the
# other admit again; across a reload the zone and its counts are kept
# (old workers' sessions still count, and give back into it when they
# end); a reload that changes a zone's key is refused.

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
plan(skip_all => 'limit_conn is freenginx 1.29 (ours); stock 1.28 has none')
	if $stock;

my $conf = <<'EOF';

%%TEST_GLOBALS%%

daemon off;
worker_processes 2;

events {
}

mail {
    auth_http  127.0.0.1:8081/auth;

    limit_conn_zone %%KEY%% zone=user:1m;

    server {
        listen     127.0.0.1:8110;
        protocol   pop3;
        limit_conn user 1;
    }
}

EOF

my $t = Test::Nginx->new()->has(qw/mail pop3/);
(my $c = $conf) =~ s/%%KEY%%/\$remote_user/;
$t->write_file_expand('nginx.conf', $c);

port($_) for 8081, 8111;

$t->run_daemon(\&auth_daemon);
$t->run_daemon(\&backend);
$t->run()->plan(9);

$t->waitforsocket('127.0.0.1:' . port($_)) for 8081, 8111;

###############################################################################

# A POP3 login as "shared": the client, the reply to PASS, and the pid of
# the worker that served it (from its "connected" line)
sub login {
	my $s = Test::Nginx::POP3->new();
	my $port = $s->socket()->sockport();
	$s->read();
	$s->send('USER shared');
	$s->read();
	$s->send('PASS secret');
	my $reply = $s->read() // '';
	my ($pid) = $t->read_file('error.log')
		=~ /(\d+)#\d+: \*\d+ client 127\.0\.0\.1:$port connected/;
	return ($s, $reply, $pid // 0);
}

my $refusal = "-ERR [SYS/TEMP] Too many connections\r\n";

my ($held, $reply, $held_pid) = login();
like($reply, qr/^\+OK/, 'held in one worker');

# new sessions land on either worker: the other one refuses too
my ($other_pid, $other_reply) = (0, '');
for my $try (1 .. 300) {
	my ($s, $r, $pid) = login();
	next if $pid == $held_pid;
	($other_pid, $other_reply) = ($pid, $r);
	note("the other worker after $try sessions");
	last;
}
isnt($other_pid, 0, 'a session in the other worker');
is($other_reply, $refusal, 'the other worker refuses: the count is shared');

# the held session ends: the other worker admits again
$held->send('QUIT');
$held->read();
undef $held;
my $admitted = 0;
for (1 .. 300) {
	my ($s, $r, $pid) = login();
	next if $pid != $other_pid;
	$admitted = $r =~ /^\+OK/;
	last if $admitted;
	select undef, undef, undef, 0.05;
}
ok($admitted, 'given back in one worker, admitted in the other');

# across a reload: the zone and its counts are kept

# (the last session of the loop above may not be closed yet)
for (1 .. 100) {
	($held, $reply) = login();
	last if $reply =~ /^\+OK/;
	select undef, undef, undef, 0.1;
}
like($reply, qr/^\+OK/, 'held before the reload');

my $workers = () = $t->read_file('error.log') =~ /start worker process/g;
$t->reload();
for (1 .. 300) {
	last if (() = $t->read_file('error.log') =~ /start worker process/g)
		>= $workers + 2;
	select undef, undef, undef, 0.1;
}

# a session may still reach an old worker for a moment; both refuse
my (undef, $after) = login();
is($after, $refusal, 'an old worker\'s session counts after the reload');

$held->send('QUIT');
$held->read();
undef $held;
$admitted = 0;
for (1 .. 100) {
	my ($s, $r) = login();
	last if ($admitted = $r =~ /^\+OK/);
	select undef, undef, undef, 0.1;
}
ok($admitted, 'and gives its count back when it ends');

# a reload may not change a zone's key
($c = $conf) =~ s/%%KEY%%/\$remote_addr/;
$t->write_file_expand('nginx.conf', $c);
$t->reload();
my $log = '';
for (1 .. 300) {
	$log = $t->read_file('error.log');
	last if $log =~ /uses the/;
	select undef, undef, undef, 0.1;
}
like($log, qr/\[emerg\] .* limit_conn_zone "user" uses the "\$remote_addr" key while previously it used the "\$remote_user" key/,
	'key change refused');
(undef, $reply) = login();
like($reply, qr/^\+OK/, 'the running configuration stays');

###############################################################################

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

# A forking POP3 backend that accepts any login.
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
			print $c '+OK' . CRLF;
			last if $l =~ /^QUIT/;
		}
		close $c;
		POSIX::_exit(0);
	}
}

###############################################################################
