package Test::Nginx::POP3;

# A POP3 client for tests, and a fake POP3 backend.

use warnings;
use strict;

use parent -norequire, 'Test::Nginx::MailClient';

use IO::Socket::INET;
use Socket qw/ CRLF /;

use Test::Nginx;
use Test::Nginx::MailClient;

sub new {
	my ($class, @args) = @_;
	return $class->connect(8110, 8995, @args);
}

sub ok {
	my ($self, $name) = @_;
	Test::More::like($self->read(), qr/^\+OK/, $name);
}

# A fake POP3 backend: test@example.com with password "secret" may log in;
# anything else is refused.
sub pop3_test_daemon {
	my ($port) = @_;
	my $server = IO::Socket::INET->new(Proto => 'tcp',
		LocalAddr => '127.0.0.1:' . ($port || port(8111)),
		Listen => 64, ReuseAddr => 1) or die "listen: $!";
	local $SIG{PIPE} = 'IGNORE';
	while (my $client = $server->accept()) {
		$client->autoflush(1);
		print $client "+OK fake pop3 server ready" . CRLF;
		while (defined(my $line = <$client>)) {
			if ($line =~ /^quit/i) {
				print $client "+OK quit ok" . CRLF;
			} elsif ($line =~ /^user test\@example\.com\r?$/i) {
				print $client "+OK user ok" . CRLF;
			} elsif ($line =~ /^pass secret\r?$/i) {
				print $client "+OK pass ok" . CRLF;
			} else {
				print $client "-ERR unknown command" . CRLF;
			}
		}
		close $client;
	}
}

1;
