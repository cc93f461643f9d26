<!-- musewise's resource descriptor for GAVO DaCHS: released products in ivoa.obscore, with DataLink.

Installed by musewise.vo.dachs as <inputs>/musewise/q.rd; its rows come from products.csv,
which musewise.vo.publish writes from the archive's releases. Edit here, not in a data centre.
-->
<resource schema="musewise" resdir="musewise">
  <meta name="title">MUSE consortium data releases</meta>
  <meta name="description">Products of the MUSE consortium's data releases (musewise): reduced,
    sky-subtracted, flux-calibrated cubes and the calibrations they were made with, each with its
    complete reduction history.</meta>
  <meta name="creationDate">2026-12-03T00:00:00</meta>
  <meta name="subject">integral-field spectroscopy</meta>
  <meta name="creator.name">MUSE consortium</meta>
  <meta name="instrument">MUSE</meta>
  <meta name="facility">ESO VLT UT4</meta>

  <table id="main" onDisk="True" adql="True" primary="obs_publisher_did">
    <meta name="description">Released products, one row each (ObsCore columns; units as in ObsCore).</meta>
    <!-- ivoa.obscore's own DataLink service forwards to this one for these rows. -->
    <meta name="_associatedDatalinkService">
      <meta name="serviceId">dl</meta>
      <meta name="idColumn">obs_publisher_did</meta>
    </meta>
    <mixin>//products#table</mixin>
    <mixin
      productType="dataproduct_type" productSubtype="dataproduct_subtype"
      calibLevel="calib_level" collectionName="obs_collection" obsId="obs_id"
      title="obs_title" did="obs_publisher_did" targetName="target_name"
      ra="s_ra" dec="s_dec" fov="s_fov" coverage="s_region" sResolution="s_resolution"
      sXel1="s_xel1" sXel2="s_xel2" tMin="t_min" tMax="t_max" expTime="t_exptime"
      tResolution="t_resolution" tXel="t_xel" emMin="em_min" emMax="em_max"
      emResPower="em_res_power" emXel="em_xel" emUCD="em_ucd" oUCD="o_ucd"
      facilityName="facility_name" instrumentName="instrument_name"
      accessURL="'\getConfig{web}{serverURL}/musewise/q/dl/dlmeta?ID='||gavo_urlescape(obs_publisher_did)"
      mime="'application/x-votable+xml;content=datalink'"
      size="accsize/1024"
      preview="CASE WHEN preview_path IS NULL THEN NULL ELSE '\getConfig{web}{serverURL}/musewise/q/dl/static/' || substring(preview_path from 10) END"
      >//obscore#publish</mixin>
    <column name="dataproduct_type" type="text" ucd="meta.code.class"/>
    <column name="dataproduct_subtype" type="text"/>
    <column name="calib_level" type="smallint" required="True"/>
    <column name="obs_collection" type="text"/>
    <column name="obs_id" type="text"/>
    <column name="obs_title" type="text"/>
    <column name="obs_publisher_did" type="text" ucd="meta.ref.ivoid"/>
    <column name="target_name" type="text"/>
    <column name="s_ra" type="double precision" unit="deg" ucd="pos.eq.ra"/>
    <column name="s_dec" type="double precision" unit="deg" ucd="pos.eq.dec"/>
    <column name="s_fov" type="real" unit="deg"/>
    <column name="s_region" type="spoly" unit="deg"/>
    <column name="s_resolution" type="real" unit="arcsec"/>
    <column name="s_xel1" type="bigint"><values nullLiteral="-1"/></column>
    <column name="s_xel2" type="bigint"><values nullLiteral="-1"/></column>
    <column name="t_min" type="double precision" unit="d"/>
    <column name="t_max" type="double precision" unit="d"/>
    <column name="t_exptime" type="double precision" unit="s"/>
    <column name="t_resolution" type="double precision" unit="s"/>
    <column name="t_xel" type="bigint"><values nullLiteral="-1"/></column>
    <column name="em_min" type="double precision" unit="m"/>
    <column name="em_max" type="double precision" unit="m"/>
    <column name="em_res_power" type="double precision"/>
    <column name="em_xel" type="bigint"><values nullLiteral="-1"/></column>
    <column name="em_ucd" type="text"/>
    <column name="o_ucd" type="text"/>
    <column name="facility_name" type="text"/>
    <column name="instrument_name" type="text"/>
    <column name="release" type="text" description="The musewise release (name version)."/>
    <column name="dataset_id" type="bigint" required="True"
      description="The product's dataset ID in the musewise archive."/>
    <column name="provenance_path" type="text"
      description="W3C PROV-JSON of the product's reduction history (resdir-relative)."/>
    <column name="notebook_path" type="text"
      description="Executed notebook of the run that made the product (resdir-relative)."/>
    <column name="preview_path" type="text"
      description="Quick-look PNG of the product (resdir-relative): a cube's white light, an image."/>
  </table>

  <data id="import">
    <sources>products.csv</sources>
    <csvGrammar>
      <rowfilter procDef="//products#define">
        <bind key="table">"\schema.main"</bind>
        <bind key="accref">@accref</bind>
        <bind key="path">@accref</bind>
        <bind key="fsize">int(@size)</bind>
        <bind key="mime">"application/fits"</bind>
        <bind key="preview">None</bind>
      </rowfilter>
    </csvGrammar>
    <make table="main">
      <rowmaker idmaps="*">
        <map key="s_region">parseSimpleSTCS(@s_region) if @s_region else None</map>
      </rowmaker>
    </make>
  </data>

  <table id="sources" onDisk="True" adql="True">
    <meta name="description">Sources of the released source catalogues (SOURCE_CATALOG, step sources:
      MUSELET line detections and white-light continuum detections), one row each.</meta>
    <column name="catalog_did" type="text" ucd="meta.ref.ivoid"
      description="obs_publisher_did of the catalogue in ivoa.obscore (its DataLink gives the file)."/>
    <column name="release" type="text" description="The musewise release (name version)."/>
    <column name="dataset_id" type="bigint" required="True"
      description="The catalogue's dataset ID in the musewise archive."/>
    <column name="source_id" type="integer" required="True" description="Source number in its catalogue."/>
    <column name="kind" type="text" description="line (emission-line detection) or continuum (white light)."/>
    <column name="ra" type="double precision" unit="deg" ucd="pos.eq.ra;meta.main"/>
    <column name="dec" type="double precision" unit="deg" ucd="pos.eq.dec;meta.main"/>
    <column name="wavelength" type="double precision" unit="Angstrom" ucd="em.wl;spect.line"
      description="Peak of the line (air); NULL for a continuum source."/>
    <column name="flux" type="double precision"
      description="Line flux (cube BUNIT x Angstrom) or white-light flux (BUNIT) in the aperture."/>
    <column name="flux_err" type="double precision" description="Standard deviation of flux, same unit."/>
    <column name="snr" type="real" ucd="stat.snr"/>
    <column name="spectrum" type="text" description="Extension of the catalogue file holding its spectrum."/>
    <column name="image" type="text" description="Extension holding its narrow-band (or white-light) image."/>
  </table>

  <data id="import_sources">
    <sources>sources.csv</sources>
    <csvGrammar/>
    <make table="sources"/>
  </data>

  <!-- The archive's registry as the audience sees it (musewise.vo.tables): metadata only. -->
  <table id="datasets" onDisk="True" adql="True" primary="dataset_id">
    <meta name="description">Every raw frame, calibration and product of the musewise archive this
      service's audience may see, one row each, with its validity and quality flag. Files are served
      for released products only (released_did, in ivoa.obscore).</meta>
    <column name="dataset_id" type="bigint" required="True" ucd="meta.id;meta.main"
      description="The dataset's ID in the musewise archive (its identity)."/>
    <column name="kind" type="text" description="raw, static, calibration, science, notebook or auxiliary."/>
    <column name="category" type="text" ucd="meta.code.class"
      description="Frame type of raw data (ESO DPR TYPE: BIAS, OBJECT...) or ESO PRO CATG of a product."/>
    <column name="collection" type="text" description="The archive collection it was written to."/>
    <column name="night" type="text" description="Observing night (local evening date, YYYY-MM-DD)."/>
    <column name="date_obs" type="timestamp" ucd="time.start;obs" description="Start of the observation (UTC)."/>
    <column name="mjd_obs" type="double precision" unit="d" ucd="time.start;obs"/>
    <column name="exptime" type="double precision" unit="s" ucd="time.duration;obs.exposure"/>
    <column name="mode" type="text" description="ESO INS MODE (WFM-NOAO-N...)."/>
    <column name="object" type="text" ucd="meta.id;src"/>
    <column name="ifu" type="integer" description="IFU (1-24) of a single-IFU product; NULL for several."/>
    <column name="exposure" type="text" description="The exposure it belongs to (its DATE-OBS)."/>
    <column name="ra" type="double precision" unit="deg" ucd="pos.eq.ra;meta.main"
      description="Telescope pointing (header RA)."/>
    <column name="dec" type="double precision" unit="deg" ucd="pos.eq.dec;meta.main"
      description="Telescope pointing (header DEC)."/>
    <column name="airmass" type="double precision" ucd="obs.airMass" description="ESO TEL AIRM START."/>
    <column name="obs_name" type="text" description="ESO OBS NAME."/>
    <column name="arcfile" type="text" description="ESO archive file name of a raw frame."/>
    <column name="is_valid" type="smallint" description="The verdict on the dataset as a whole: 1 valid, 0 not."/>
    <column name="flag" type="text" ucd="meta.code.qual" description="Quality flag: unchecked, good, warning or bad."/>
    <column name="usable" type="smallint"
      description="1: valid, no IFU invalid and not made from an invalid input: reductions may use it."/>
    <column name="affected_by" type="bigint" description="The invalid dataset it was made from, if any."/>
    <column name="privilege" type="text" description="Who may see it: public or consortium here."/>
    <column name="project" type="text"/>
    <column name="run_id" type="bigint" description="The run that made it (musewise.runs); NULL for raw data."/>
    <column name="pipeline_version" type="text"/>
    <column name="sha256" type="text" description="Checksum of its file."/>
    <column name="size" type="bigint" unit="byte"/>
    <column name="filename" type="text"/>
    <column name="released_did" type="text" ucd="meta.ref.ivoid"
      description="obs_publisher_did of its released copy in ivoa.obscore, if released."/>
  </table>

  <table id="dataset_ifus" onDisk="True" adql="True">
    <meta name="description">The verdict on each IFU of the datasets in musewise.datasets.</meta>
    <column name="dataset_id" type="bigint" required="True"/>
    <column name="ifu" type="integer" required="True"/>
    <column name="is_valid" type="smallint" description="1 valid, 0 not."/>
    <column name="flag" type="text" ucd="meta.code.qual"/>
    <column name="comment" type="text"/>
  </table>

  <table id="runs" onDisk="True" adql="True" primary="run_id">
    <meta name="description">Recipe runs (ESO MUSE pipeline recipes and musewise steps) this audience may
      see: what ran, with which parameters and software, and how it ended.</meta>
    <column name="run_id" type="bigint" required="True" ucd="meta.id;meta.main"/>
    <column name="recipe" type="text" description="The recipe (muse_bias, muse_scipost, muselet...)."/>
    <column name="night" type="text"/>
    <column name="ifu" type="integer"/>
    <column name="mode" type="text"/>
    <column name="status" type="text" description="planned, running, succeeded or failed."/>
    <column name="is_reference" type="smallint" description="1: a run of the consortium's reference reduction."/>
    <column name="pipeline_version" type="text"/>
    <column name="musewise_version" type="text"/>
    <column name="started" type="timestamp" description="UTC."/>
    <column name="ended" type="timestamp" description="UTC."/>
    <column name="parameters" type="text" description="The recipe parameters (JSON)."/>
    <column name="collection" type="text" description="The collection its products were written to."/>
    <column name="notebook_id" type="bigint" description="Dataset ID of its executed notebook."/>
  </table>

  <table id="run_inputs" onDisk="True" adql="True">
    <meta name="description">The inputs of each run in musewise.runs (those this audience may see),
      with the tag the recipe was given them under and why each was chosen.</meta>
    <column name="run_id" type="bigint" required="True"/>
    <column name="dataset_id" type="bigint" required="True"/>
    <column name="tag" type="text"/>
    <column name="reason" type="text"/>
  </table>

  <table id="qc" onDisk="True" adql="True">
    <meta name="description">QC numbers measured on the datasets in musewise.datasets.</meta>
    <column name="dataset_id" type="bigint" required="True"/>
    <column name="ifu" type="integer"/>
    <column name="name" type="text" description="QC parameter (ESO QC keyword or musewise measurement)."/>
    <column name="qc_value" type="double precision" description="Its value (VALUE is an ADQL reserved word)."/>
    <column name="unit" type="text"/>
    <column name="run_id" type="bigint" description="The run that measured it."/>
  </table>

  <data id="import_datasets">
    <sources>datasets.csv</sources>
    <csvGrammar/>
    <make table="datasets">
      <rowmaker idmaps="*">
        <!-- an empty field is NULL (DaCHS's own timestamp parser refuses it) -->
        <map key="date_obs">parseWithNull(@date_obs, parseISODT, "")</map>
      </rowmaker>
    </make>
  </data>
  <data id="import_dataset_ifus">
    <sources>dataset_ifus.csv</sources>
    <csvGrammar/>
    <make table="dataset_ifus"/>
  </data>
  <data id="import_runs">
    <sources>runs.csv</sources>
    <csvGrammar/>
    <make table="runs">
      <rowmaker idmaps="*">
        <!-- an empty field is NULL (DaCHS's own timestamp parser refuses it) -->
        <map key="started">parseWithNull(@started, parseISODT, "")</map>
        <map key="ended">parseWithNull(@ended, parseISODT, "")</map>
      </rowmaker>
    </make>
  </data>
  <data id="import_run_inputs">
    <sources>run_inputs.csv</sources>
    <csvGrammar/>
    <make table="run_inputs"/>
  </data>
  <data id="import_qc">
    <sources>qc.csv</sources>
    <csvGrammar/>
    <make table="qc"/>
  </data>

  <service id="dl" allowed="dlmeta,dlget,static">
    <meta name="title">MUSE consortium release products: DataLink</meta>
    <property name="staticData">releases</property>
    <datalinkCore>
      <descriptorGenerator>
        <code>
          with base.getTableConn() as conn:
            rows = list(conn.query("SELECT accref, provenance_path, notebook_path, preview_path FROM musewise.main"
                                   " WHERE obs_publisher_did = %(did)s", {"did": pubDID}))
          if not rows:
            return DatalinkFault.NotFoundFault(pubDID, "no released product has this identifier")
          desc = ProductDescriptor.fromAccref(pubDID, rows[0][0])
          # DaCHS's own #this link (/getproduct) drops the path of a serverURL behind a proxy
          # (/services/vo): every link here goes through the static renderer, which keeps it.
          desc.suppressAutoLinks = True
          desc.filePath = rows[0][0].split("/", 1)[1]
          desc.provenancePath, desc.notebookPath, desc.previewPath = rows[0][1], rows[0][2], rows[0][3]
          return desc
        </code>
      </descriptorGenerator>
      <metaMaker semantics="#this">
        <code>
          yield descriptor.makeLinkFromFile(descriptor.filePath,
            description="The released file", contentType=descriptor.mime)
        </code>
      </metaMaker>
      <metaMaker semantics="#preview">
        <code>
          if descriptor.previewPath:
            yield descriptor.makeLinkFromFile(descriptor.previewPath,
              description="Quick look (PNG): a cube's white-light image, an image's pixels",
              contentType="image/png")
        </code>
      </metaMaker>
      <metaMaker semantics="#provenance">
        <code>
          if descriptor.provenancePath:
            yield descriptor.makeLinkFromFile(descriptor.provenancePath,
              description="Reduction history (W3C PROV-JSON): every run and input the product was made from",
              contentType="application/x-prov+json")
          if descriptor.notebookPath:
            yield descriptor.makeLinkFromFile(descriptor.notebookPath,
              description="Executed notebook of the run that made the product",
              contentType="application/x-ipynb+json")
        </code>
      </metaMaker>
    </datalinkCore>
  </service>
</resource>
