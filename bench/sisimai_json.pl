#!/usr/bin/perl
# sisimai_json.pl: run Sisimai (the peer classifier) over .eml files and print
# one JSON line per (file, recipient), for bench/classify_peers.py to score.
#
#   perl bench/sisimai_json.pl FILE.eml...     # or: ... | perl bench/sisimai_json.pl -
#
# Written for Debian's libsisimai-perl 4.25.x: Sisimai->make($path) returns a
# list of Sisimai::Data (->damn gives a hash). Rows:
#   {"file", "recipient", "reason", "status", "replycode", "hardbounce",
#    "softbounce", "smtpagent"}                    one per recipient found
#   {"file", "bounce": false}                      Sisimai did not recognise it
#   {"file", "error": "..."}                       Sisimai died on it
#   {"summary": {"files", "rows", "seconds", "sisimai", "reasons"}}   last line
# ("reasons": the reason names this Sisimai version can give at all).
# "status" is Sisimai's deliverystatus; "hardbounce" is softbounce == 0 (4.25
# has no hardbounce field: softbounce is 1 soft, 0 hard, -1 not applicable).
# delivered => 1 so that successful-delivery reports are listed as such.
# "seconds" covers the loop only (file reads included, Perl start-up and module
# loading excluded); the caller times the whole process as well.
use strict;
use warnings;
use JSON::PP;
use Time::HiRes qw(time);
use Sisimai;

my $json = JSON::PP->new->canonical;

# The file names: the arguments, or one a line on standard input for "-".
sub file_list {
    my $from_stdin = !@ARGV || (@ARGV == 1 && $ARGV[0] eq '-');
    return @ARGV unless $from_stdin;
    my @lines = grep { /\S/ } <STDIN>;
    chomp @lines;
    return @lines;
}

# The rows for one file (Sisimai's warnings go to standard error).
sub rows_for {
    my ($file) = @_;
    my $list = eval { Sisimai->make($file, 'delivered' => 1) };
    if ($@) {
        (my $err = "$@") =~ s/\s+\z//;
        return ({ file => $file, error => $err });
    }
    return ({ file => $file, bounce => JSON::PP::false }) unless $list && @$list;
    return map { row_for($file, $_) } @$list;
}

sub row_for {
    my ($file, $data) = @_;
    my $h = $data->damn // {};
    my $soft = $h->{softbounce} // '';
    return {
        file       => $file,
        recipient  => $h->{recipient} // '',
        reason     => $h->{reason} // '',
        status     => $h->{deliverystatus} // '',
        replycode  => $h->{replycode} // '',
        softbounce => $soft,
        hardbounce => ($soft ne '' && $soft == 0) ? JSON::PP::true : JSON::PP::false,
        smtpagent  => $h->{smtpagent} // '',
    };
}

sub main {
    my @files = file_list();
    binmode STDOUT;
    my ($start, $rows) = (time, 0);
    for my $file (@files) {
        for my $row (rows_for($file)) {
            print $json->encode($row), "\n";
            $rows++;
        }
    }
    my $seconds = time - $start;
    print $json->encode({ summary => {
        files => scalar @files, rows => $rows, seconds => $seconds + 0, sisimai => Sisimai->version,
        reasons => [ sort map { lc } keys %{ Sisimai->reason } ],
    } }), "\n";
    return 0;
}

exit main();
