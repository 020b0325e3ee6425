package Test::Nginx::IMAP;

# An IMAP client for tests, and a fake IMAP backend.

use warnings;
use strict;

use parent -norequire, 'Test::Nginx::MailClient';

use IO::Socket::INET;
use Socket qw/ CRLF /;

use Test::Nginx;
use Test::Nginx::MailClient;

sub new {
	my ($class, @args) = @_;
	return $class->connect(8143, 8993, @args);
}

sub ok {
	my ($self, $name) = @_;
	Test::More::like($self->read(), qr/^\S+ OK/, $name);
}

# A fake IMAP backend: answers literals with "+ ", LOGIN (any user) with
# "tag OK" (after an untagged CAPABILITY when the command mentions
# "capability"), LOGOUT with "tag OK", anything else with "tag ERR".
sub imap_test_daemon {
	my ($port) = @_;
	my $server = IO::Socket::INET->new(Proto => 'tcp',
		LocalAddr => '127.0.0.1:' . ($port || port(8144)),
		Listen => 64, ReuseAddr => 1) or die "listen: $!";
	local $SIG{PIPE} = 'IGNORE';
	while (my $client = $server->accept()) {
		$client->autoflush(1);
		print $client "* OK fake imap server ready" . CRLF;
		while (defined(my $line = <$client>)) {
			while ($line =~ /\{(\d+)\}\r?\n\z/) {
				print $client "+ " . CRLF;
				read($client, my $data, $1);
				my $more = <$client> // '';
				$line .= $data . $more;
			}
			my ($tag, $rest) = $line =~ /^(\S*)\s*(.*)/s;
			if ($rest =~ /^logout/i) {
				print $client "$tag OK logout ok" . CRLF;
			} elsif ($rest =~ /^login /i) {
				print $client "* CAPABILITY IMAP4rev1" . CRLF
					if $rest =~ /capability/;
				print $client "$tag OK login ok" . CRLF;
			} else {
				print $client "$tag ERR unknown command" . CRLF;
			}
		}
		close $client;
	}
}

1;
