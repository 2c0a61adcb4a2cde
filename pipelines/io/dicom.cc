/* pipelines/io/dicom.cc - the DICOM reader behind pipelines/io/dicom.h, on DCMTK 3.6.
 *
 * The one C++ file in the tree: every entry point is extern "C", catches whatever DCMTK or the
 * allocator throws, and answers with an mi_status and a message naming the input, like the C
 * readers. Order of work: parse the dataset (pixel data of a file on disk stays on disk until
 * read), check every attribute that sizes an allocation against the bytes that are really
 * there and against MI_IMAGE_MAX_*, and only then let DicomImage decode frame 0. DicomImage
 * itself is lenient (it pads short pixel data with zeros, guesses missing attributes), which
 * is why those checks are ours. */
#include <dcmtk/config/osconfig.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcmetinf.h>
#include <dcmtk/dcmdata/dcpixel.h>
#include <dcmtk/dcmdata/dcpixseq.h>
#include <dcmtk/dcmdata/dcpxitem.h>
#include <dcmtk/dcmdata/dcrledrg.h>
#include <dcmtk/dcmdata/dcxfer.h>
#include <dcmtk/dcmdata/dccodec.h>
#include <dcmtk/dcmimage/diregist.h>   /* colour images (RGB, YBR, PALETTE) for DicomImage */
#include <dcmtk/dcmimgle/dcmimage.h>
#include <dcmtk/dcmjpeg/djdecode.h>
#include <dcmtk/dcmjpls/djdecode.h>
#include <dcmtk/oflog/oflog.h>

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

#include <sys/mman.h>
#include <unistd.h>

extern "C" {
#include "pipelines/io/dicom.h"
#include "pipelines/io/image.h"
}

namespace {

/* Decoders are process-wide in DCMTK; a function-local static is initialised exactly once even
   when threads race to the first load (C++11), and its destructor unregisters them at exit so
   the leak checker sees DCMTK's codec list emptied. DCMTK's logger would print its own view of
   every fault on stderr; our message already says what is wrong, so it is switched off. */
struct dcmtk_setup {
    dcmtk_setup() {
        OFLog::configure(OFLogger::OFF_LOG_LEVEL);
        DcmRLEDecoderRegistration::registerCodecs();
        DJDecoderRegistration::registerCodecs();
        DJLSDecoderRegistration::registerCodecs();
    }
    ~dcmtk_setup() {
        DJLSDecoderRegistration::cleanup();
        DJDecoderRegistration::cleanup();
        DcmRLEDecoderRegistration::cleanup();
    }
};

void setup_once() { static dcmtk_setup s; (void)s; }

void copy_str(char *dst, size_t n, const char *src) {
    snprintf(dst, n, "%s", src ? src : "");
}

/* DICOM's code strings are padded with spaces; DCMTK strips them when it returns an OFString */
OFString get_string(DcmItem *item, const DcmTagKey &tag) {
    OFString s;
    if (item->findAndGetOFString(tag, s).bad()) s.clear();
    return s;
}

int get_us(DcmItem *item, const DcmTagKey &tag, int missing) {
    Uint16 v;
    return item->findAndGetUint16(tag, v).good() ? (int)v : missing;
}

int get_ul_int(DcmItem *item, const DcmTagKey &tag) {
    Uint32 v;
    if (item->findAndGetUint32(tag, v).bad()) return 0;
    return v > (Uint32)INT_MAX ? INT_MAX : (int)v;
}

double get_fd(DcmItem *item, const DcmTagKey &tag) {
    Float64 v;
    return item->findAndGetFloat64(tag, v).good() ? (double)v : 0.0;
}

void read_regions(DcmDataset *ds, mi_dicom_image *img) {
    DcmSequenceOfItems *seq = NULL;
    if (ds->findAndGetSequence(DCM_SequenceOfUltrasoundRegions, seq).bad() || !seq) return;
    unsigned long n = seq->card();
    for (unsigned long i = 0; i < n && img->nregions < MI_DICOM_MAX_REGIONS; i++) {
        DcmItem *it = seq->getItem(i);
        if (!it) continue;
        mi_dicom_region *r = &img->regions[img->nregions++];
        r->spatial_format = get_us(it, DCM_RegionSpatialFormat, 0);
        r->x0 = get_ul_int(it, DCM_RegionLocationMinX0);
        r->y0 = get_ul_int(it, DCM_RegionLocationMinY0);
        r->x1 = get_ul_int(it, DCM_RegionLocationMaxX1);
        r->y1 = get_ul_int(it, DCM_RegionLocationMaxY1);
        r->unit_x = get_us(it, DCM_PhysicalUnitsXDirection, MI_DICOM_UNIT_NONE);
        r->unit_y = get_us(it, DCM_PhysicalUnitsYDirection, MI_DICOM_UNIT_NONE);
        r->delta_x = get_fd(it, DCM_PhysicalDeltaX);
        r->delta_y = get_fd(it, DCM_PhysicalDeltaY);
    }
}

bool photometric_known(const OFString &p, int *spp_expected) {
    static const struct { const char *name; int spp; } known[] = {
        { "MONOCHROME1", 1 }, { "MONOCHROME2", 1 }, { "PALETTE COLOR", 1 },
        { "RGB", 3 }, { "YBR_FULL", 3 }, { "YBR_FULL_422", 3 },
    };
    for (const auto &k : known)
        if (p == k.name) { *spp_expected = k.spp; return true; }
    return false;
}

/* The parsed file, whatever it came from: checks, then frame 0 to grey. */
/* DCMTK's JPEG decoder (libdcmjpeg 3.6.7) first walks a fragment's markers up to the first
 * start-of-frame to read the sample precision, and that walk does not move past a TEM marker
 * (FF 01): a fragment with one among its headers makes it loop forever (found by fuzz_dicom).
 * This is the same walk, so such a file is refused before DCMTK sees it: true when the walk
 * would reach a TEM. Fill bytes (FF FF) are stepped over, segments with a length skipped,
 * start-of-frame ends the walk, as does anything that is not a marker. */
bool jpeg_header_walk_stalls(const Uint8 *d, Uint32 n) {
    Uint32 off = 0;
    while (off + 4 < n) {
        if (d[off] != 0xff) return false;
        const unsigned m = d[off + 1];
        if (m == 0x01) return true;
        if (m == 0xff) {   /* a fill byte before a marker: 3.6.7 steps over it (so must we) */
            off += 1;
            continue;
        }
        const bool sof = (m >= 0xc0 && m <= 0xcf) && m != 0xc4 && m != 0xc8 && m != 0xcc;
        if (sof) return false;
        if (m == 0xc4 || m == 0xc8 || m == 0xcc || (m >= 0xda && m <= 0xfe))
            off += (((Uint32)d[off + 2] << 8) | d[off + 3]) + 2;
        else if ((m >= 0xd0 && m <= 0xd9) || (m > 0x02 && m <= 0xbf))
            off += 2;
        else
            return false;
    }
    return false;
}

mi_status check_jpeg_fragments(DcmElement *pixels, const char *name) {
    DcmPixelData *pd = OFdynamic_cast(DcmPixelData *, pixels);
    if (!pd) return MI_OK;
    E_TransferSyntax orig = EXS_Unknown;
    const DcmRepresentationParameter *rep = NULL;
    pd->getOriginalRepresentationKey(orig, rep);
    DcmPixelSequence *seq = NULL;
    if (pd->getEncapsulatedRepresentation(orig, rep, seq).bad() || !seq) return MI_OK;
    for (unsigned long i = 0; i < seq->card(); i++) {
        DcmPixelItem *it = NULL;
        Uint8 *d = NULL;
        if (seq->getItem(it, i).bad() || !it || it->getUint8Array(d).bad() || !d) continue;
        if (jpeg_header_walk_stalls(d, it->getLength()))
            return MI_FAIL(MI_ERR_FORMAT, "%s: pixel data fragment %lu has a TEM marker (FF 01) among its JPEG "
                           "headers, which the JPEG decoder cannot get past", name, i);
    }
    return MI_OK;
}

mi_status decode(mi_dicom_image *img, DcmFileFormat &ff, const char *name) {
    DcmDataset *ds = ff.getDataset();
    E_TransferSyntax xfer = ds->getOriginalXfer();
    DcmXfer xf(xfer);
    OFString ts_uid = get_string(ff.getMetaInfo(), DCM_TransferSyntaxUID);
    copy_str(img->transfer_syntax, sizeof img->transfer_syntax,
             ts_uid.empty() ? xf.getXferID() : ts_uid.c_str());
    copy_str(img->modality, sizeof img->modality, get_string(ds, DCM_Modality).c_str());
    read_regions(ds, img);

    DcmElement *pixels = NULL;
    if (ds->findAndGetElement(DCM_PixelData, pixels).bad() || !pixels)
        return MI_FAIL(MI_ERR_FORMAT, "%s: no Pixel Data (7FE0,0010)", name);

    int rows = get_us(ds, DCM_Rows, -1), cols = get_us(ds, DCM_Columns, -1);
    if (rows < 0 || cols < 0)
        return MI_FAIL(MI_ERR_FORMAT, "%s: Pixel Data without %s", name,
                       rows < 0 ? "Rows (0028,0010)" : "Columns (0028,0011)");
    if (rows == 0 || cols == 0 || rows > MI_IMAGE_MAX_SIDE || cols > MI_IMAGE_MAX_SIDE ||
        (long long)rows * cols > MI_IMAGE_MAX_PIXELS)
        return MI_FAIL(rows && cols ? MI_ERR_UNSUPPORTED : MI_ERR_FORMAT,
                       "%s: %dx%d pixels (Columns x Rows), at least 1x1 and at most %dx%d and %lld pixels supported",
                       name, cols, rows, MI_IMAGE_MAX_SIDE, MI_IMAGE_MAX_SIDE, MI_IMAGE_MAX_PIXELS);
    img->w = cols;
    img->h = rows;

    OFString photometric = get_string(ds, DCM_PhotometricInterpretation);
    copy_str(img->photometric, sizeof img->photometric, photometric.c_str());
    int spp_expected = 0;
    if (photometric.empty())
        return MI_FAIL(MI_ERR_FORMAT, "%s: no Photometric Interpretation (0028,0004)", name);
    if (!photometric_known(photometric, &spp_expected))
        return MI_FAIL(MI_ERR_UNSUPPORTED, "%s: Photometric Interpretation \"%s\" is not supported "
                       "(MONOCHROME1/2, RGB, YBR_FULL(_422), PALETTE COLOR are)", name, photometric.c_str());
    int spp = get_us(ds, DCM_SamplesPerPixel, -1);
    if (spp != spp_expected)
        return MI_FAIL(MI_ERR_FORMAT, "%s: Samples per Pixel (0028,0002) is %d, %s needs %d", name, spp,
                       photometric.c_str(), spp_expected);
    int bits_alloc = get_us(ds, DCM_BitsAllocated, -1), bits_stored = get_us(ds, DCM_BitsStored, -1);
    if (bits_alloc != 8 && bits_alloc != 16)
        return MI_FAIL(MI_ERR_UNSUPPORTED, "%s: Bits Allocated (0028,0100) is %d, 8 or 16 supported", name,
                       bits_alloc);
    if (bits_stored < 1 || bits_stored > bits_alloc)
        return MI_FAIL(MI_ERR_FORMAT, "%s: Bits Stored (0028,0101) is %d, Bits Allocated %d", name, bits_stored,
                       bits_alloc);
    if (spp == 3 && bits_alloc != 8)  /* colour above 8 bits: no scanner we serve writes it */
        return MI_FAIL(MI_ERR_UNSUPPORTED, "%s: %s with %d bits allocated, 8 supported", name,
                       photometric.c_str(), bits_alloc);
    img->bits_stored = bits_stored;

    img->frames = 1;
    if (ds->tagExistsWithValue(DCM_NumberOfFrames)) {
        Sint32 nf = 0;
        if (ds->findAndGetSint32(DCM_NumberOfFrames, nf).bad() || nf < 1)
            return MI_FAIL(MI_ERR_FORMAT, "%s: Number of Frames (0028,0008) is \"%s\", not a count", name,
                           get_string(ds, DCM_NumberOfFrames).c_str());
        img->frames = nf;
    }

    if (xf.getXfer() == EXS_Unknown)
        return MI_FAIL(MI_ERR_UNSUPPORTED, "%s: transfer syntax %s is not supported", name, img->transfer_syntax);
    unsigned long long frame_bytes = (unsigned long long)rows * cols * spp * (bits_alloc / 8);
    if (xf.isEncapsulated()) {
        if (!DcmCodecList::canChangeCoding(xfer, EXS_LittleEndianExplicit))
            return MI_FAIL(MI_ERR_UNSUPPORTED, "%s: transfer syntax %s (%s) is not supported (no decoder)", name,
                           img->transfer_syntax, xf.getXferName());
        if (mi_status st = check_jpeg_fragments(pixels, name)) return st;
    } else if ((unsigned long long)pixels->getLength() < frame_bytes) {
        return MI_FAIL(MI_ERR_FORMAT, "%s: Pixel Data (7FE0,0010) is %lu bytes, %dx%d x %d samples x %d bits "
                       "needs %llu", name, (unsigned long)pixels->getLength(), cols, rows, spp, bits_alloc,
                       frame_bytes);
    }

    /* frame 0 only: partial access decodes (or, from a file, reads) that frame and no other */
    DicomImage di(ds, xfer, CIF_UsePartialAccessToPixelData, 0, 1);
    if (di.getStatus() != EIS_Normal)
        return MI_FAIL(MI_ERR_FORMAT, "%s: cannot decode the pixel data (%s, transfer syntax %s)", name,
                       DicomImage::getString(di.getStatus()), xf.getXferName());
    if ((int)di.getWidth() != cols || (int)di.getHeight() != rows)
        return MI_FAIL(MI_ERR_FORMAT, "%s: decoded %lux%lu pixels, the header says %dx%d", name, di.getWidth(),
                       di.getHeight(), cols, rows);
    size_t npx = (size_t)rows * cols;
    img->gray = (uint8_t *)malloc(npx);
    if (!img->gray) return MI_FAIL(MI_ERR_NOMEM, "%s: %zu bytes for the pixels", name, npx);

    if (di.isMonochrome()) {
        /* MONOCHROME1 is inverted by DicomImage's rendering itself (bright is high on output) */
        if (bits_stored > 8) {
            if (di.getWindowCount() > 0) di.setWindow(0);
            else di.setMinMaxWindow(0);
        }
        const uint8_t *out = (const uint8_t *)di.getOutputData(8, 0, 0);
        if (!out || di.getOutputDataSize(8) < npx)
            return MI_FAIL(MI_ERR_FORMAT, "%s: cannot render the pixel data to 8 bits", name);
        memcpy(img->gray, out, npx);
    } else {
        /* colour (RGB, YBR converted by DicomImage, PALETTE looked up) as interleaved RGB; the luma
           is ours, rounded, so that a test can compute it exactly */
        const uint8_t *rgb = (const uint8_t *)di.getOutputData(8, 0, 0);
        if (!rgb || di.getOutputDataSize(8) < npx * 3)
            return MI_FAIL(MI_ERR_FORMAT, "%s: cannot render the pixel data to 8-bit RGB", name);
        for (size_t i = 0; i < npx; i++, rgb += 3)
            img->gray[i] = (uint8_t)((299u * rgb[0] + 587u * rgb[1] + 114u * rgb[2] + 500u) / 1000u);
    }
    return MI_OK;
}

const char DICM_AT[] = "DICM";
enum { PREAMBLE = 128 };

mi_status not_dicom(const char *name) {
    return MI_FAIL(MI_ERR_FORMAT, "%s: not a DICOM file (no \"DICM\" after the 128-byte preamble)", name);
}

/* DCMTK's conditions for "the bytes ran out": from a buffer the parser waits for more
   (StreamNotifyClient); from a file, a value longer than what is left is an InvalidStream, which
   also covers lengths that no truncation explains, hence "or corrupt". */
mi_status parse_failed(const OFCondition &c, const char *name) {
    if (c == EC_StreamNotifyClient || c == EC_EndOfStream)
        return MI_FAIL(MI_ERR_FORMAT, "%s: truncated DICOM data (%s)", name, c.text());
    if (c == EC_InvalidStream)
        return MI_FAIL(MI_ERR_FORMAT, "%s: truncated or corrupt DICOM data (a length runs past the end: %s)",
                       name, c.text());
    return MI_FAIL(MI_ERR_FORMAT, "%s: cannot parse the DICOM data (%s)", name, c.text());
}

template <class F> mi_status guarded(mi_dicom_image *img, const char *name, F body) {
    mi_status st;
    try {
        setup_once();
        st = body();
    } catch (const std::bad_alloc &) {
        st = MI_FAIL(MI_ERR_NOMEM, "%s: out of memory while reading DICOM", name);
    } catch (...) {
        st = MI_FAIL(MI_ERR_FORMAT, "%s: DCMTK failed while reading DICOM", name);
    }
    if (st != MI_OK) mi_dicom_free(img);
    return st;
}

}  // namespace

extern "C" {

int mi_dicom_sniff(const void *data, size_t n) {
    return data && n >= PREAMBLE + 4 && !memcmp((const char *)data + PREAMBLE, DICM_AT, 4);
}

mi_status mi_dicom_load_memory(mi_dicom_image *img, const void *data, size_t n, const char *name) {
    memset(img, 0, sizeof *img);
    if (!name) name = "(memory)";
    if (!mi_dicom_sniff(data, n)) return not_dicom(name);
    /* Through an anonymous in-memory file, not DcmInputBufferStream: DCMTK checks each value's
       length against what is left only on file streams; from a buffer it allocates what a length
       field claims first (fuzz_dicom: 3.8 GB for a 3 KB input). No file on disk is involved. */
    int fd = memfd_create("mi_dicom", MFD_CLOEXEC);
    if (fd < 0) return MI_FAIL(MI_ERR_IO, "%s: memfd_create: %s", name, strerror(errno));
    const char *p = (const char *)data;
    for (size_t done = 0; done < n;) {
        ssize_t w = write(fd, p + done, n - done);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            int e = errno;
            close(fd);
            return MI_FAIL(MI_ERR_IO, "%s: copying %zu bytes to a memfd: %s", name, n, strerror(e));
        }
        done += (size_t)w;
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    mi_status st = guarded(img, name, [&]() -> mi_status {
        DcmFileFormat ff;
        OFCondition c = ff.loadFile(path, EXS_Unknown, EGL_noChange, DCM_MaxReadLength, ERM_fileOnly);
        if (c.bad()) return parse_failed(c, name);
        return decode(img, ff, name);
    });
    close(fd);
    return st;
}

mi_status mi_dicom_load(mi_dicom_image *img, const char *path) {
    memset(img, 0, sizeof *img);
    FILE *f = fopen(path, "rb");
    if (!f) return MI_FAIL(MI_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    unsigned char head[PREAMBLE + 4];
    size_t got = fread(head, 1, sizeof head, f);
    fclose(f);
    if (!mi_dicom_sniff(head, got)) return not_dicom(path);
    return guarded(img, path, [&]() -> mi_status {
        DcmFileFormat ff;
        /* values over DCM_MaxReadLength (the pixel data) stay in the file until DicomImage reads
           frame 0, so a long cine loop costs one frame of memory */
        OFCondition c = ff.loadFile(path, EXS_Unknown, EGL_noChange, DCM_MaxReadLength, ERM_fileOnly);
        if (c.bad()) return parse_failed(c, path);
        return decode(img, ff, path);
    });
}

void mi_dicom_free(mi_dicom_image *img) {
    if (!img) return;
    free(img->gray);
    memset(img, 0, sizeof *img);
}

const mi_dicom_region *mi_dicom_mmode_region(const mi_dicom_image *img) {
    for (int i = 0; img && i < img->nregions && i < MI_DICOM_MAX_REGIONS; i++)
        if (img->regions[i].spatial_format == MI_DICOM_REGION_MMODE) return &img->regions[i];
    return NULL;
}

}  // extern "C"
